//! Admission: whether a call may go out, and what it holds while it does. Starts policy
//! enforcement from `[policy]` ([`start_policy`]), fetches the organization policy for
//! each call ([`Client::admit`], honouring `when_unreachable`), checks `[identity]`
//! against the key's binding ([`check_identity`]), reserves a model's maximum cost under
//! a hard budget ([`Client::reserve_for`]) and settles the reservation with what the
//! call cost ([`Client::settle`]); a refused usage record releases its reservation.

use std::sync::Arc;

use super::Client;
use super::recording::usage_error;
use super::route::route_policy;
use crate::accounts::KeyScope;
use crate::accounts::enforce;
use crate::accounts::policy_client::{Hold, PolicyClient, PolicyState, Reserved};
use crate::accounts::{EffectivePolicy, Level};
use crate::config::{Config, EnforceMode, Identity, KeySource, WhenUnreachable};
use crate::error::{Error, Result};
use crate::routing::select::RoutePolicy;
use crate::types::ChatRequest;
use crate::usage::{Clock, DeliveryEvent, RecordId};

/// Settled reservations remembered while their records travel (oldest dropped beyond:
/// the collector lets such a hold lapse after 24 h anyway).
const MAX_AWAITING_RECORDS: usize = 100_000;

impl Client {
    /// Check `[identity]` against the key's binding in `policy` and stamp later usage
    /// records with the binding.
    pub(super) fn bind(&self, policy: &EffectivePolicy) -> Result<()> {
        check_identity(
            &self.inner.config.identity,
            &policy.api_key_id,
            &policy.scope,
        )?;
        if let Some(r) = &self.inner.recorder {
            r.apply_binding(&policy.scope);
        }
        Ok(())
    }

    /// The collector answered for some records: forget delivered ones; release the
    /// reservation of each refused one (its cost will never be stored, so the hold must
    /// not keep counting against the budget).
    pub(super) fn on_delivery(&self, e: &DeliveryEvent) {
        let released: Vec<String> = {
            let mut m = self
                .inner
                .awaiting_records
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for id in &e.delivered {
                m.remove(id);
            }
            e.refused
                .iter()
                .filter_map(|(id, _)| m.remove(id))
                .collect()
        };
        if released.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                count = released.len(),
                "no async runtime: the reservations of refused records lapse at their expiry"
            );
            return;
        };
        let client = self.clone();
        rt.spawn(async move {
            let Some(pc) = &client.inner.policy else { return };
            for res in released {
                match pc.settle(&res, 0, 0, None).await {
                    Ok(()) => tracing::info!(reservation = %res, "released the reservation of a refused usage record"),
                    Err(e) => tracing::warn!(reservation = %res, error = %e, "could not release the reservation of a refused usage record: it lapses in 24 h"),
                }
            }
        });
    }

    /// The policy this call is held to: fetched (or cached) from the collector; when it
    /// cannot be reached, what `[policy] when_unreachable` says. Validates the request
    /// first so a malformed one never costs a collector round trip.
    pub(super) async fn admit(&self, req: &ChatRequest) -> Result<Gate> {
        req.validate()?;
        let Some(pc) = &self.inner.policy else {
            return Ok(Gate::default());
        };
        let cfg = pc.config();
        match pc.current().await? {
            PolicyState::Current(p) => {
                self.bind(&p)?;
                Ok(Gate {
                    route: Some(route_policy(self, pc, &p)),
                    policy: Some(p),
                    online: true,
                })
            }
            PolicyState::NotManaged => Ok(Gate::default()),
            PolicyState::Offline {
                policy,
                age_ms,
                error,
            } => match cfg.when_unreachable {
                WhenUnreachable::Allow => {
                    tracing::warn!(error = %error, "collector unreachable: calling without policy or budget checks ([policy] when_unreachable = \"allow\")");
                    Ok(Gate::default())
                }
                WhenUnreachable::Deny => Err(policy_unavailable(format!(
                    "the collector cannot be reached ({error}) and [policy] when_unreachable = \"deny\" refuses calls until it can; fix the collector connection or choose \"last_known\""
                ))),
                WhenUnreachable::LastKnown => match policy {
                    None => {
                        tracing::warn!(error = %error, "collector unreachable and no policy was ever fetched: calling without policy checks (fail open; set [policy] when_unreachable = \"deny\" to refuse instead)");
                        Ok(Gate::default())
                    }
                    Some(_) if age_ms > cfg.max_stale_ms => Err(policy_unavailable(format!(
                        "the collector cannot be reached ({error}) and the last known policy is {age_ms} ms old, older than [policy] max_stale_ms = {}; fix the collector connection",
                        cfg.max_stale_ms
                    ))),
                    Some(p) => {
                        self.bind(&p)?;
                        tracing::debug!(error = %error, age_ms, "collector unreachable: enforcing the last known policy");
                        Ok(Gate {
                            route: Some(route_policy(self, pc, &p)),
                            policy: Some(p),
                            online: false,
                        })
                    }
                },
            },
        }
    }

    /// Before calling `model`: check it against the policy and, when a hard budget
    /// applies, reserve its maximum cost (with the collector when online, against the
    /// last known budgets minus local spend otherwise). `Ok(None)`: nothing to hold.
    pub(super) async fn reserve_for(
        &self,
        gate: &Gate,
        req: &ChatRequest,
        model: &str,
    ) -> Result<Option<Hold>> {
        let (Some(pc), Some(policy)) = (&self.inner.policy, &gate.policy) else {
            return Ok(None);
        };
        enforce::check_model(&policy.rules, &self.inner.catalog, model)?;
        let budgets = pc.local_budgets(policy);
        if !enforce::has_hard(&budgets) {
            return Ok(None);
        }
        let (micros, tokens) = enforce::max_cost(&self.inner.catalog, req, model);
        let local = |budgets: &[crate::accounts::BudgetStatus]| -> Result<Option<Hold>> {
            enforce::check_budgets(budgets, model, micros, tokens)?;
            Ok(Some(pc.hold(
                uuid::Uuid::now_v7().hyphenated().to_string(),
                model,
                micros,
                tokens,
                false,
            )))
        };
        if !gate.online {
            return local(&budgets);
        }
        // Until the collector's answer is in, the reservation may exist there with nobody
        // to settle it: if the caller gives up meanwhile, or no answer arrives, release it.
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        let mut pending = PendingReservation {
            client: self,
            id: Some(id.clone()),
        };
        let answer = pc.reserve(&id, model, micros, tokens).await;
        if !matches!(answer, Ok(Reserved::Unreachable(_))) {
            pending.id = None; // granted (held below) or refused: nothing dangling
        }
        drop(pending);
        match answer? {
            Reserved::Granted(r) => {
                Ok(Some(pc.hold(r.reservation_id, model, micros, tokens, true)))
            }
            Reserved::Unreachable(msg) => match pc.config().when_unreachable {
                WhenUnreachable::Allow => {
                    tracing::warn!(error = %msg, "cannot reserve with the collector: calling without a budget check ([policy] when_unreachable = \"allow\")");
                    Ok(None)
                }
                WhenUnreachable::Deny => Err(policy_unavailable(format!(
                    "cannot reserve the call's cost with the collector ({msg}) and [policy] when_unreachable = \"deny\""
                ))),
                WhenUnreachable::LastKnown => {
                    tracing::warn!(error = %msg, "cannot reserve with the collector: checking the last known budgets locally");
                    local(&budgets)
                }
            },
        }
    }

    /// End a call's hold with what it actually cost (0 releases it) and, when the
    /// collector holds it too, settle there with the usage record's id. A settle that
    /// fails is logged: the collector lets the hold lapse at its expiry.
    pub(super) async fn settle(
        &self,
        hold: Option<Hold>,
        micros: u64,
        tokens: u64,
        record_id: Option<RecordId>,
    ) {
        if let Some(h) = self.settle_local(hold, micros, tokens) {
            self.settle_remote(&h, micros, tokens, record_id).await;
        }
    }

    /// The local half of settling: release the hold with the actual cost (without a
    /// hold, count the spend). Returns the hold when the collector holds it too.
    fn settle_local(&self, hold: Option<Hold>, micros: u64, tokens: u64) -> Option<Hold> {
        let pc = self.inner.policy.as_ref()?;
        match hold {
            Some(h) => {
                pc.release(&h, micros, tokens);
                h.online.then_some(h)
            }
            None => {
                if micros > 0 || tokens > 0 {
                    pc.note_spend(micros, tokens);
                }
                None
            }
        }
    }

    async fn settle_remote(&self, h: &Hold, micros: u64, tokens: u64, record_id: Option<RecordId>) {
        let Some(pc) = &self.inner.policy else { return };
        let rid = record_id.filter(|_| micros > 0 || tokens > 0).map(|r| r.0);
        if let Some(r) = &rid {
            let mut m = self
                .inner
                .awaiting_records
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            m.insert(r.clone(), h.id.clone());
            if m.len() > MAX_AWAITING_RECORDS {
                m.pop_first();
            }
        }
        if let Err(e) = pc.settle(&h.id, micros, tokens, rid).await {
            tracing::warn!(reservation = %h.id, error = %e, "settle failed: the collector releases the hold at its expiry");
        }
    }

    /// [`Client::settle`] from synchronous code (a stream ending or dropped, a call
    /// abandoned by its caller): the local accounting now, the collector request on the
    /// runtime when there is one.
    pub(super) fn settle_detached(
        &self,
        hold: Option<Hold>,
        micros: u64,
        tokens: u64,
        record_id: Option<RecordId>,
    ) {
        let Some(h) = self.settle_local(hold, micros, tokens) else {
            return;
        };
        let client = self.clone();
        let id = h.id.clone();
        detach(&id, async move {
            client.settle_remote(&h, micros, tokens, record_id).await
        });
    }
}

/// Send a collector request about reservation `id` from synchronous code (a drop): on
/// the current async runtime, or, without one, not at all (warned: the collector
/// releases the hold when it lapses).
fn detach(id: &str, request: impl std::future::Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(request);
        }
        Err(_) => tracing::warn!(
            reservation = %id,
            "no async runtime to settle on: the collector releases the hold at its expiry"
        ),
    }
}

/// The policy one call is held to (empty: none). A shadow call is held to its call's.
#[derive(Debug, Default, Clone)]
pub(super) struct Gate {
    /// The effective policy (fresh, or last known when offline).
    policy: Option<Arc<EffectivePolicy>>,
    /// Whether the collector answers (reservations go to it) or not (local checks).
    online: bool,
    /// What routing sees of it.
    pub(super) route: Option<RoutePolicy>,
}

/// A reservation held while a provider is called. If the call's future is dropped
/// (the caller gave up), the hold is released rather than leaked: the provider's answer,
/// if any, was never received, so the local view counts nothing.
pub(super) struct HoldGuard<'a> {
    client: &'a Client,
    hold: Option<Hold>,
}

impl<'a> HoldGuard<'a> {
    pub(super) fn new(client: &'a Client, hold: Option<Hold>) -> Self {
        HoldGuard { client, hold }
    }

    pub(super) fn take(&mut self) -> Option<Hold> {
        self.hold.take()
    }
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.hold.take() {
            self.client.settle_detached(Some(h), 0, 0, None);
        }
    }
}

/// A reservation request sent but not answered: dropped with an id (the caller gave up
/// while it was in flight, or no answer came), it is released on the collector with a
/// zero settle, which the collector answers 404 when the request never arrived. Without
/// this a granted hold nobody knows of stays until it lapses (120 s by default).
struct PendingReservation<'a> {
    client: &'a Client,
    id: Option<String>,
}

impl Drop for PendingReservation<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let client = self.client.clone();
        detach(&id.clone(), async move {
            let Some(pc) = &client.inner.policy else {
                return;
            };
            if let Err(e) = pc.settle(&id, 0, 0, None).await {
                tracing::debug!(reservation = %id, error = %e, "could not release an unanswered reservation: the collector releases it at its expiry");
            }
        });
    }
}

fn policy_unavailable(message: String) -> Error {
    Error::Permission {
        rule: "policy_unavailable".into(),
        level: None::<Level>,
        message,
    }
}

/// Start policy enforcement per `[policy] enforce` (see [`EnforceMode`]).
pub(super) fn start_policy(
    config: &Config,
    http: &reqwest::Client,
    clock: Arc<dyn Clock>,
) -> Result<Option<PolicyClient>> {
    let pcfg = &config.policy;
    if pcfg.enforce == EnforceMode::Off {
        return Ok(None);
    }
    let rep = &config.reporting;
    let key = rep.key_source();
    let (url, key_id) = match (&rep.collector_url, &config.identity.api_key_id) {
        (Some(u), Some(k)) if key.is_configured() => (u, k),
        _ => {
            if pcfg.enforce == EnforceMode::Required {
                let mut missing = Vec::new();
                if rep.collector_url.is_none() {
                    missing.push("reporting.collector_url");
                }
                if config.identity.api_key_id.is_none() {
                    missing.push("identity.api_key_id");
                }
                let no_key;
                if let KeySource::None { var } = key {
                    no_key = format!(
                        "a signing key (reporting.signing_key_file, ${var}, or an in-memory key)"
                    );
                    missing.push(&no_key);
                }
                return Err(Error::config(
                    "policy.enforce",
                    format!(
                        "enforce = \"required\" but {} not configured",
                        missing.join(", ")
                    ),
                    "configure them (the key that signs usage records also signs policy requests), or set enforce = \"auto\"",
                ));
            }
            tracing::debug!(
                "organization policy not enforced: needs reporting.collector_url, identity.api_key_id and a signing key"
            );
            return Ok(None);
        }
    };
    let signer = rep.load_signer().map_err(usage_error)?;
    PolicyClient::new(http.clone(), url, key_id, signer, pcfg.clone(), clock).map(Some)
}

/// `[identity]` values must agree with the key's binding: a unit the binding sets must
/// be configured to the same value or not at all. A unit the binding leaves open may be
/// configured (it narrows attribution; the collector decides whether it accepts it).
pub(super) fn check_identity(
    identity: &Identity,
    api_key_id: &str,
    scope: &KeyScope,
) -> Result<()> {
    let org = Some(scope.org.clone()).filter(|o| !o.is_empty());
    for (field, configured, bound) in [
        ("org", &identity.org, &org),
        ("department", &identity.department, &scope.department),
        ("project", &identity.project, &scope.project),
        ("group", &identity.group, &scope.group),
        ("user", &identity.user, &scope.user),
    ] {
        if let (Some(c), Some(b)) = (configured, bound) {
            if c != b {
                return Err(Error::config(
                    format!("identity.{field}"),
                    format!(
                        "is `{c}` but api_key_id `{api_key_id}` is bound to {field} `{b}` (the key's binding: {})",
                        describe_scope(scope)
                    ),
                    format!(
                        "remove identity.{field} (records take the key's binding) or set it to `{b}`; to attribute calls elsewhere, use a key bound there"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn describe_scope(s: &KeyScope) -> String {
    let mut parts = vec![format!("org `{}`", s.org)];
    for (k, v) in [
        ("department", &s.department),
        ("project", &s.project),
        ("group", &s.group),
        ("user", &s.user),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k} `{v}`"));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::client::testing::{ask, records_config};
    use crate::error::ErrorKind;

    fn scope() -> KeyScope {
        KeyScope {
            org: "acme".into(),
            department: Some("eng".into()),
            project: None,
            group: None,
            user: Some("alice".into()),
        }
    }

    #[test]
    fn identity_overrides_are_checked_against_the_binding() {
        let none = Identity {
            api_key_id: Some("k".into()),
            ..Default::default()
        };
        check_identity(&none, "k", &scope()).unwrap();
        let same = Identity {
            org: Some("acme".into()),
            department: Some("eng".into()),
            ..none.clone()
        };
        check_identity(&same, "k", &scope()).unwrap();
        // A unit the binding leaves open may be set (it narrows attribution).
        let project = Identity {
            project: Some("p1".into()),
            ..none.clone()
        };
        check_identity(&project, "k", &scope()).unwrap();
        let wrong = Identity {
            department: Some("legal".into()),
            ..none
        };
        let e = check_identity(&wrong, "k", &scope()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let text = e.to_string();
        assert!(
            text.contains("identity.department")
                && text.contains("`legal`")
                && text.contains("department `eng`")
                && text.contains("user `alice`"),
            "{text}"
        );
    }

    /// Issue 19: a key passed in memory (MobileOptions) counts for the policy too, so
    /// `enforce = "required"` starts and `"auto"` enforces.
    #[tokio::test]
    async fn an_in_memory_signing_key_turns_on_policy_enforcement() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = records_config(&dir.path().join("spool"));
        cfg.reporting.collector_url = Some("http://127.0.0.1:9".into());
        cfg.reporting.signing_key_env = Some("GATEROUTER_TEST_UNSET_KEY_VARIABLE".into());
        assert!(matches!(cfg.reporting.key_source(), KeySource::Memory(_)));
        cfg.policy.enforce = EnforceMode::Required;
        let c = Client::new(cfg.clone()).unwrap();
        assert!(c.policy_client().is_some() && c.usage_status().spool_dir.is_some());
        c.shutdown().await.unwrap();
        cfg.policy.enforce = EnforceMode::Auto;
        cfg.reporting.spool_dir = Some(dir.path().join("spool2"));
        let c = Client::new(cfg.clone()).unwrap();
        assert!(
            c.policy_client().is_some(),
            "auto enforces with an in-memory key"
        );
        c.shutdown().await.unwrap();
        // No key anywhere: required is a config error naming what is missing.
        cfg.reporting.signing_key = None;
        cfg.reporting.spool_dir = Some(dir.path().join("spool3"));
        assert!(!cfg.reporting.signing_key_configured());
        let e = Client::new(cfg).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    }

    fn enforced(dir: &std::path::Path, when: WhenUnreachable) -> Client {
        let mut cfg = records_config(dir);
        // Nothing listens on port 9: the collector is unreachable.
        cfg.reporting.collector_url = Some("http://127.0.0.1:9".into());
        cfg.policy.enforce = EnforceMode::Required;
        cfg.policy.when_unreachable = when;
        Client::new(cfg).unwrap()
    }

    /// Issue 19 stage tests: admission refuses when the collector cannot say what the
    /// policy is and `when_unreachable = "deny"`, and lets the call through with no
    /// policy under `"allow"`.
    #[tokio::test]
    async fn an_unreachable_collector_denies_or_allows_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let req = ask("openai/gpt-4o-mini");
        let c = enforced(&dir.path().join("deny"), WhenUnreachable::Deny);
        match c.admit(&req).await.err().unwrap() {
            Error::Permission { rule, .. } => assert_eq!(rule, "policy_unavailable"),
            other => panic!("{other:?}"),
        }
        c.shutdown().await.unwrap();
        let c = enforced(&dir.path().join("allow"), WhenUnreachable::Allow);
        let gate = c.admit(&req).await.unwrap();
        assert!(gate.policy.is_none() && gate.route.is_none());
        // No hold without a policy.
        assert!(
            c.reserve_for(&gate, &req, "openai/gpt-4o-mini")
                .await
                .unwrap()
                .is_none()
        );
        c.shutdown().await.unwrap();
    }

    /// A malformed request is refused before any collector round trip.
    #[tokio::test]
    async fn a_malformed_request_is_refused_before_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let c = enforced(dir.path(), WhenUnreachable::Deny);
        let empty = ChatRequest::new("openai/gpt-4o-mini", Vec::new());
        let e = c.admit(&empty).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
        c.shutdown().await.unwrap();
    }
}
