//! Routing, as the client sees it: validation and the route decision (everything that
//! can fail before a provider is called), the organization's learning state, the price
//! a request is estimated on, and what routing may ask the client about a model
//! ([`Availability`]: configured, permitted, keyed, circuit closed).

use std::sync::Arc;

use super::Client;
use crate::accounts::EffectivePolicy;
use crate::accounts::enforce;
use crate::accounts::policy_client::PolicyClient;
use crate::error::{Error, Result};
use crate::health::BreakerState;
use crate::model_id::ModelId;
use crate::routing::learning::{self, Learning, LearningTrace};
use crate::routing::select::{Availability, RoutePolicy, RoutingConfig, SelectInput, select};
use crate::routing::{Exclusion, RouteDecision, Scorer, Tier};
use crate::types::ChatRequest;

/// Within-tier exploration of a learning organization's `auto` decision served from its
/// decided tier: with probability `share` the model is drawn uniformly among the tier's
/// usable candidates instead of the policy's pick (never over a pinned model), and
/// `trace.model_propensity` becomes the model's probability. The decision's chain then
/// starts with the drawn model; the others stay as fallbacks in their order.
fn explore_within_tier(
    cfg: &RoutingConfig,
    decision: &mut RouteDecision,
    trace: &mut LearningTrace,
    share: f64,
) {
    let Some(tier) = decision.tier else { return };
    let n = decision
        .candidates
        .iter()
        .take_while(|c| c.tier == Some(tier))
        .count();
    let models: Vec<&str> = decision.candidates[..n]
        .iter()
        .map(|c| c.model.as_str())
        .collect();
    let policy = cfg.first_choice(tier, &models);
    let share = if policy.pinned { 0.0 } else { share };
    let draws = [rand::random::<f64>(), rand::random::<f64>()];
    let i = Learning::explore_model(share, &policy.odds, trace, draws);
    if i > 0 && i < n {
        let c = decision.candidates.remove(i);
        let first = std::mem::replace(&mut decision.chosen, c.model.clone());
        decision.candidates.insert(0, c);
        decision.reason.push_str(&format!(
            " (explored within the tier: {} instead of {first}; the organization explores to learn)",
            decision.chosen
        ));
    }
}

impl Client {
    /// `shadow_ok`: the call may be shadowed (a plain call; a stream never is).
    pub(super) fn route_with(
        &self,
        req: &ChatRequest,
        accounts: Option<&RoutePolicy>,
        shadow_ok: bool,
    ) -> Result<RouteDecision> {
        req.validate()?;
        let cfg = &self.inner.config.routing;
        let learning = accounts.and_then(|a| a.learning.as_deref());
        let mut trace = None;
        let mut version = None;
        // Shadow sampling: the score report forced to the other arm, when the org shadows.
        let mut shadow_report = None;
        // The exploration share in force for this call (0 while a budget is tight).
        let mut share = 0.0;
        let score = if ModelId::is_auto(&req.model) {
            let (scorer, v) =
                match learning.and_then(|l| l.scorer.as_deref().zip(l.version.as_ref())) {
                    Some((s, v)) => (s, v),
                    None => (&self.inner.scorer, &self.inner.scorer_version),
                };
            version = Some(v.clone());
            let mut report = scorer.score(req);
            if let Some(l) = learning.filter(|l| l.record_features) {
                let allowed: Vec<Tier> = accounts
                    .and_then(|a| a.rules.allowed_tiers.as_ref())
                    .map(|t| t.value.clone())
                    .unwrap_or_default();
                // Budget-aware: no exploration while a hard budget of the key has less
                // than a fifth of its limit left (exploring may pick the costly tier).
                let tight = accounts.is_some_and(|a| {
                    a.budgets.iter().any(|b| {
                        b.enforcement == crate::accounts::Enforcement::Hard
                            && b.remaining.saturating_mul(5) < b.limit
                    })
                });
                share = if tight { 0.0 } else { l.explore };
                let draws = [rand::random::<f64>(), rand::random::<f64>()];
                let features = learning::features_of_scored(&report, req, l.hashing);
                let mut t = l.explore_at(share, &mut report, &allowed, draws);
                t.features = Some(features);
                trace = Some(t);
                if shadow_ok && !tight && l.shadow > 0.0 {
                    if let Some(other) = learning::other_arm(report.tier, &allowed) {
                        let mut r = report.clone();
                        r.tier = other;
                        shadow_report = Some(r);
                    }
                }
            }
            Some(report)
        } else {
            // Explicit: the precise error (unknown provider, unset key variable, not in
            // the allow-list) comes from resolve().
            self.resolve(&req.model)?;
            None
        };
        let input = |score| SelectInput {
            req,
            score,
            cfg,
            catalog: &self.inner.catalog,
            accounts,
        };
        let mut decision = select(input(score), self)?;
        decision.weights_version = version;
        // Served from its decided tier: a learning sample (else the call went to another
        // arm than its propensity describes), which may explore inside the tier, before
        // any shadow is chosen (a shadow must go to another model than the one that
        // serves the call) ...
        let servable = decision.served_tier.is_none();
        if let (Some(t), true) = (trace.as_mut(), servable) {
            explore_within_tier(cfg, &mut decision, t, share);
        }
        // ... and may be shadowed when the other arm has a usable model of its own tier:
        // else its propensity stays that of its arm alone (no second selection is made).
        if let (Some(r), Some(t), Some(l), true) =
            (shadow_report, trace.as_mut(), learning, servable)
        {
            let other = select(input(Some(r)), self)
                .ok()
                .filter(|d| d.served_tier.is_none() && d.chosen != decision.chosen);
            if let Some(mut d) = other {
                if let Some(mut st) = l.shadow_at(l.shadow, t, rand::random::<f64>()) {
                    // The shadow's model is its tier's policy pick (no exploration).
                    explore_within_tier(cfg, &mut d, &mut st, 0.0);
                    d.reason = format!(
                        "shadow sampling: the same request also goes to the other arm ({}); {}",
                        d.tier.map_or("?", |t| t.as_str()),
                        d.reason
                    );
                    d.weights_version = decision.weights_version.clone();
                    d.learning = Some(st);
                    decision.shadow = Some(Box::new(d));
                }
            }
        }
        if let Some(t) = &trace {
            if t.explored {
                decision.reason.push_str(&format!(
                    " (explored: the score alone picked the {} tier; the organization explores to learn)",
                    t.scored_tier
                ));
            }
        }
        decision.learning = trace;
        Ok(decision)
    }

    /// The learning state of the organization's policy `p`, parsed and verified once per
    /// version of its routing section.
    fn learning_of(&self, pc: &PolicyClient, p: &EffectivePolicy) -> Option<Arc<Learning>> {
        let rp = p.routing.as_ref()?;
        let key = format!(
            "{}|{}|{}|{}|{}|{}",
            rp.learning,
            rp.explore_permille,
            rp.shadow_permille,
            rp.salt,
            rp.bits,
            rp.weights.as_ref().map_or("", |w| w.version.as_str())
        );
        let mut cache = self
            .inner
            .learning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((k, l)) = cache.as_ref() {
            if *k == key {
                return l.clone();
            }
        }
        let (l, warning) =
            build_learning(&p.scope.org, rp, pc.config().weights_public_key.as_deref());
        if let Some(w) = warning {
            tracing::warn!("{w}");
            pc.warn(w);
        }
        *cache = Some((key, l.clone()));
        l
    }

    /// The model a request is priced on. With an organization policy (the last one
    /// fetched), an explicit model it denies, or a `max_tokens` above its limit, is the
    /// same `PermissionDenied` a call would get.
    pub(super) fn priced_model(&self, req: &ChatRequest) -> Result<String> {
        if ModelId::is_auto(&req.model) {
            return Ok(self.route(req)?.chosen);
        }
        let model = ModelId::parse(&req.model)?.to_string();
        if let Some(p) = self.inner.policy.as_ref().and_then(PolicyClient::cached) {
            enforce::check_max_tokens(&p.rules, req)?;
            enforce::check_model(&p.rules, &self.inner.catalog, &model)?;
        }
        Ok(model)
    }

    /// Validation and the route decision: everything that can fail before a provider is
    /// called.
    pub(super) fn prepare(
        &self,
        req: &ChatRequest,
        accounts: Option<&RoutePolicy>,
        shadow_ok: bool,
    ) -> Result<RouteDecision> {
        crate::usage::record::validate_tags(&req.metadata).map_err(|e| Error::InvalidRequest {
            field: Some("metadata".into()),
            message: format!("metadata becomes the usage record's tags: {e}"),
        })?;
        self.route_with(req, accounts, shadow_ok)
    }
}

impl Availability for Client {
    fn check(&self, model: &str) -> std::result::Result<(), (Exclusion, String)> {
        let id = ModelId::parse(model).map_err(|e| (Exclusion::UnknownProvider, e.to_string()))?;
        let Some(provider) = self.inner.providers.get(&id.provider) else {
            return Err((
                Exclusion::UnknownProvider,
                format!("provider `{}` is not configured", id.provider),
            ));
        };
        let cfg = &self.inner.config;
        if !cfg.models.is_empty() && !cfg.models.iter().any(|m| m.id == model) {
            return Err((
                Exclusion::NotPermitted,
                "not permitted: not in the [[models]] allow-list".into(),
            ));
        }
        if provider.api_key().is_err() {
            return Err((
                Exclusion::NoApiKey,
                format!(
                    "no API key (${} is not set)",
                    provider.api_key_env.as_deref().unwrap_or("?")
                ),
            ));
        }
        if self.inner.health.state(&provider.name) == BreakerState::Open {
            return Err((
                Exclusion::CircuitOpen,
                format!(
                    "circuit open for provider `{}` after repeated failures",
                    provider.name
                ),
            ));
        }
        Ok(())
    }

    fn latency_ms(&self, model: &str) -> Option<f64> {
        self.inner.health.latency_ms(model)
    }
}

pub(super) fn route_policy(client: &Client, pc: &PolicyClient, p: &EffectivePolicy) -> RoutePolicy {
    RoutePolicy {
        rules: p.rules.clone(),
        budgets: pc.local_budgets(p),
        learning: client.learning_of(pc, p),
    }
}

/// The client-side learning state of an organization's routing policy: `None` when it
/// neither learns nor has learned weights. Weights that do not verify (or do not parse)
/// are refused with a policy warning; the client's own weights then score.
fn build_learning(
    org: &str,
    rp: &crate::accounts::RoutingPolicy,
    pinned: Option<&str>,
) -> (Option<Arc<Learning>>, Option<String>) {
    if let Err(e) = rp.validate() {
        return (
            None,
            Some(format!(
                "the collector's routing policy is invalid ({e}): learning is off for this client"
            )),
        );
    }
    let salt = rp.salt_u64().unwrap_or(0);
    let mut warning = None;
    let mut scorer = None;
    if let Some(sw) = &rp.weights {
        let checked = sw.verify(org, pinned).and_then(|()| {
            let w =
                crate::routing::Weights::from_json(&sw.weights_json).map_err(|e| e.to_string())?;
            if w.fingerprint() != sw.version {
                return Err(format!(
                    "weights {} have fingerprint {}",
                    sw.version,
                    w.fingerprint()
                ));
            }
            Ok(w)
        });
        match checked {
            Ok(w) => scorer = Some(Arc::new(Scorer::new(w))),
            Err(e) => {
                warning = Some(format!(
                    "learned router weights {} refused ({e}): routing with this client's own weights",
                    sw.version
                ))
            }
        }
    }
    if !rp.learning && scorer.is_none() {
        return (None, warning);
    }
    let version = scorer.as_ref().map(|s| s.weights().fingerprint());
    (
        Some(Arc::new(Learning {
            record_features: rp.learning,
            explore: if rp.learning {
                f64::from(rp.explore_permille) / 1000.0
            } else {
                0.0
            },
            shadow: if rp.learning {
                f64::from(rp.shadow_permille) / 1000.0
            } else {
                0.0
            },
            hashing: crate::routing::lexical::Hashing {
                bits: rp.bits,
                salt,
            },
            scorer,
            version,
        })),
        warning,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::client::testing::{ask, offline_config};
    use crate::config::ModelEntry;

    fn client(allow: &[&str]) -> Client {
        let mut cfg = offline_config();
        cfg.models = allow
            .iter()
            .map(|m| ModelEntry {
                id: (*m).to_owned(),
                provider_model: None,
            })
            .collect();
        Client::new(cfg).unwrap()
    }

    #[test]
    fn availability_names_why_a_model_is_excluded() {
        let c = client(&["openai/gpt-4o-mini"]);
        assert!(c.check("openai/gpt-4o-mini").is_ok());
        assert_eq!(
            c.check("openai/gpt-4o").unwrap_err().0,
            Exclusion::NotPermitted
        );
        assert_eq!(
            c.check("nowhere/model").unwrap_err().0,
            Exclusion::UnknownProvider
        );
    }

    /// An org policy that learns and shadows every plain `auto` call; `usd_left` of a
    /// $10 hard daily budget (none: no budget).
    fn shadowing(explore: f64, usd_left: Option<u64>) -> RoutePolicy {
        learning_policy(explore, 1.0, usd_left)
    }

    /// An org policy that learns, explores `explore` and shadows `shadow` of plain calls.
    fn learning_policy(explore: f64, shadow: f64, usd_left: Option<u64>) -> RoutePolicy {
        use crate::accounts::{
            BudgetStatus, EffectiveRules, Enforcement, Level, LevelKind, Metric, Period,
            PolicyRules,
        };
        let level = Level::new(LevelKind::Org, "acme");
        let budgets = usd_left
            .map(|remaining| BudgetStatus {
                id: "b-day".into(),
                level: level.clone(),
                metric: Metric::Usd,
                period: Period::Day,
                limit: 10_000_000,
                used: 10_000_000 - remaining,
                reserved: 0,
                remaining,
                period_start_ms: 0,
                resets_at_ms: u64::MAX,
                enforcement: Enforcement::Hard,
                notify_at: vec![],
            })
            .into_iter()
            .collect();
        RoutePolicy {
            rules: EffectiveRules::resolve([(&level, &PolicyRules::default())]),
            budgets,
            learning: Some(Arc::new(Learning {
                record_features: true,
                explore,
                shadow,
                hashing: crate::routing::lexical::Hashing { bits: 10, salt: 7 },
                scorer: None,
                version: None,
            })),
        }
    }

    #[test]
    fn shadow_sampling_plans_the_other_arm_for_plain_calls_only() {
        let c = client(&[]);
        let req = ask("auto");
        for explore in [0.0, 0.3] {
            let d = c
                .route_with(&req, Some(&shadowing(explore, None)), true)
                .unwrap();
            let s = d.shadow.as_deref().expect("every plain call is shadowed");
            assert_ne!(d.tier == Some(Tier::Heavy), s.tier == Some(Tier::Heavy));
            assert_ne!(d.chosen, s.chosen);
            assert!(s.reason.starts_with("shadow sampling"), "{}", s.reason);
            assert!(s.shadow.is_none() && s.served_tier.is_none());
            assert_eq!(s.weights_version, d.weights_version);
            // Both arms are always observed: both propensities are 1.
            let (l, sl) = (d.learning.as_ref().unwrap(), s.learning.as_ref().unwrap());
            assert!((l.propensity - 1.0).abs() < 1e-12 && (sl.propensity - 1.0).abs() < 1e-12);
            assert_eq!(sl.features, l.features);
        }
        // A stream is never shadowed: its propensity is its arm's alone (< 1 while exploring).
        let d = c
            .route_with(&req, Some(&shadowing(0.3, None)), false)
            .unwrap();
        assert!(d.shadow.is_none());
        assert!(d.learning.as_ref().unwrap().propensity < 1.0);
        // A hard budget with less than a fifth left: no shadow (nor exploration).
        let d = c
            .route_with(&req, Some(&shadowing(0.3, Some(1_000_000))), true)
            .unwrap();
        assert!(d.shadow.is_none());
        assert!((d.learning.as_ref().unwrap().propensity - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_learning_org_explores_the_models_of_a_tier_with_their_propensities() {
        // Each (tier, model) a decision serves from is seen as often as the model
        // propensity its trace says; exploration reaches more than the policy's pick.
        let c = client(&[]);
        let req = ask("auto");
        let policy = learning_policy(0.4, 0.0, None);
        let n = 4000;
        let mut seen: std::collections::BTreeMap<(Tier, String), (usize, f64)> =
            std::collections::BTreeMap::new();
        let mut explored = 0;
        for _ in 0..n {
            let d = c.route_with(&req, Some(&policy), false).unwrap();
            assert!(d.served_tier.is_none());
            let l = d.learning.as_ref().unwrap();
            assert_eq!(d.candidates[0].model, d.chosen);
            if l.model_explored {
                explored += 1;
                assert!(
                    d.reason.contains("explored within the tier"),
                    "{}",
                    d.reason
                );
            }
            let e = seen
                .entry((d.tier.unwrap(), d.chosen.clone()))
                .or_insert((0, 0.0));
            e.0 += 1;
            e.1 = l.model_propensity;
        }
        assert!(explored > 0);
        let tiers: std::collections::BTreeSet<Tier> = seen.keys().map(|(t, _)| *t).collect();
        assert!(
            seen.len() > tiers.len(),
            "only the policy's picks: {seen:?}"
        );
        for ((tier, model), (count, p)) in &seen {
            let share = *count as f64 / n as f64;
            assert!(
                (share - p).abs() < 0.025,
                "{tier:?} {model}: {share} vs {p}"
            );
        }
        // A hard budget with less than a fifth left: the policy's pick, propensity 1.
        let tight = learning_policy(0.4, 0.0, Some(1_000_000));
        for _ in 0..50 {
            let d = c.route_with(&req, Some(&tight), false).unwrap();
            let l = d.learning.as_ref().unwrap();
            assert!(!l.model_explored && (l.model_propensity - 1.0).abs() < 1e-12);
        }
        // A pinned tier is never explored away from its pin: the pin serves every call
        // from its tier, with the tier's probability as its propensity.
        let mut cfg = offline_config();
        for tier in Tier::ALL {
            let first = cfg.routing.tier_models(*tier)[0].clone();
            cfg.routing.pin.insert(*tier, first);
        }
        let pinned = Client::new(cfg).unwrap();
        for _ in 0..300 {
            let d = pinned.route_with(&req, Some(&policy), false).unwrap();
            let l = d.learning.as_ref().unwrap();
            let tier = d.tier.unwrap();
            assert_eq!(Some(&d.chosen), pinned.inner.config.routing.pin.get(&tier));
            assert!(!l.model_explored, "{}", d.reason);
            // The tier's probability alone (every tier allowed, exploration share 0.4).
            let p_tier = 0.6 * f64::from(u8::from(l.scored_tier == tier)) + 0.4 / 3.0;
            assert!((l.model_propensity - p_tier).abs() < 1e-12, "{l:?}");
        }
    }

    #[test]
    fn a_bad_tag_fails_before_routing() {
        let c = client(&[]);
        let mut req = ask("openai/gpt-4o-mini");
        req.metadata.insert(String::new(), "x".into());
        let e = c.prepare(&req, None, true).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidRequest { field: Some(f), .. } if f == "metadata"),
            "{e:?}"
        );
        req.metadata.clear();
        let d = c.prepare(&req, None, true).unwrap();
        assert_eq!(d.chosen, "openai/gpt-4o-mini");
        assert_eq!(c.priced_model(&req).unwrap(), "openai/gpt-4o-mini");
    }
}
