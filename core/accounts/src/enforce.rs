//! Pure checks the SDK runs before a call: is the model permitted (with the catalog's
//! zero-retention flag), is `max_tokens` within the limit, what is the call's maximum
//! cost, and does it fit the hard budgets. No I/O: `gaterouter::accounts::policy_client` supplies
//! the policy, `gaterouter::Client` the request.

use super::{BudgetStatus, EffectiveRules, Enforcement, Metric};
use gaterouter_pricing::{Catalog, DEFAULT_EXPECTED_COMPLETION_TOKENS};
use gaterouter_tokens::count_request;
use gaterouter_types::error::{Error, Result};
use gaterouter_types::types::ChatRequest;

/// Is `model` permitted by `rules`? The zero-retention flag comes from `catalog`
/// (unknown models are not zero-retention).
pub fn check_model(rules: &EffectiveRules, catalog: &Catalog, model: &str) -> Result<()> {
    let zero_retention = catalog.lookup(model).is_some_and(|(_, p)| p.zero_retention);
    rules
        .check_model(model, zero_retention)
        .map_err(Error::permission)
}

/// Is the request's `max_tokens` within `max_tokens_per_request`?
pub fn check_max_tokens(rules: &EffectiveRules, req: &ChatRequest) -> Result<()> {
    rules
        .check_max_tokens(req.max_tokens.map(u64::from))
        .map_err(Error::permission)
}

/// The most a call of `req` on `model` can cost: (micro-dollars, tokens). Prompt tokens
/// are counted as the model bills them; the completion is `max_tokens`, else the
/// model's max output from the catalog, else what is left of its context window.
/// Unpriced models cost 0 micro-dollars (their usage records carry no cost either).
pub fn max_cost(catalog: &Catalog, req: &ChatRequest, model: &str) -> (u64, u64) {
    match catalog.estimate_cost(req, model) {
        Ok(est) => (
            est.max.total_micros,
            est.prompt.tokens.saturating_add(est.max_completion_tokens),
        ),
        Err(_) => {
            let prompt = count_request(req, model).tokens;
            (
                0,
                prompt.saturating_add(
                    req.max_tokens
                        .map_or(DEFAULT_EXPECTED_COMPLETION_TOKENS, u64::from),
                ),
            )
        }
    }
}

/// The first hard budget that `micros` / `tokens` more would exceed, as a `Budget`
/// error naming `model` and the amount.
pub fn check_budgets(
    budgets: &[BudgetStatus],
    model: &str,
    micros: u64,
    tokens: u64,
) -> Result<()> {
    let over = budgets.iter().find(|b| {
        b.would_exceed(match b.metric {
            Metric::Usd => micros,
            Metric::Tokens => tokens,
        })
    });
    match over {
        None => Ok(()),
        Some(b) => {
            let need = match b.metric {
                Metric::Usd => super::fmt_usd(micros),
                Metric::Tokens => format!("{tokens} tokens"),
            };
            Err(Error::budget(
                b.clone(),
                Some(&format!("a call to {model} may cost up to {need}")),
            ))
        }
    }
}

/// Do any hard budgets apply?
pub fn has_hard(budgets: &[BudgetStatus]) -> bool {
    budgets.iter().any(|b| b.enforcement == Enforcement::Hard)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Level, LevelKind, Period, PolicyRules};
    use gaterouter_types::types::Message;

    fn budget(metric: Metric, remaining: u64, enforcement: Enforcement) -> BudgetStatus {
        BudgetStatus {
            id: "b".into(),
            level: Level::new(LevelKind::Department, "eng"),
            metric,
            period: Period::Day,
            limit: 1_000_000,
            used: 1_000_000 - remaining,
            reserved: 0,
            remaining,
            period_start_ms: 0,
            resets_at_ms: 86_400_000,
            enforcement,
            notify_at: vec![],
        }
    }

    #[test]
    fn max_cost_uses_max_tokens_then_catalog_max_output() {
        let cat = Catalog::builtin();
        let mut req = ChatRequest::new("openai/gpt-4o-mini", vec![Message::user("hello there")]);
        req.max_tokens = Some(100);
        let (m100, t100) = max_cost(cat, &req, "openai/gpt-4o-mini");
        req.max_tokens = None;
        let (m_none, t_none) = max_cost(cat, &req, "openai/gpt-4o-mini");
        assert!(
            m_none > m100 && t_none > t100,
            "{m_none} {m100} {t_none} {t100}"
        );
        let est = cat.estimate_cost(&req, "openai/gpt-4o-mini").unwrap();
        assert_eq!(m_none, est.max.total_micros);
        assert_eq!(max_cost(cat, &req, "nobody/unknown").0, 0);
    }

    #[test]
    fn budgets_and_rules() {
        let b = [
            budget(Metric::Usd, 500, Enforcement::Hard),
            budget(Metric::Tokens, 10, Enforcement::Soft),
        ];
        assert!(check_budgets(&b, "m", 500, 1_000_000).is_ok());
        let e = check_budgets(&b, "m", 501, 0).unwrap_err();
        assert_eq!(e.budget_status().unwrap().remaining, 500);
        assert!(e.to_string().contains("up to $0.000501"), "{e}");
        assert!(has_hard(&b) && !has_hard(&b[1..]));
        let lvl = Level::new(LevelKind::Org, "acme");
        let rules = EffectiveRules::resolve([(
            &lvl,
            &PolicyRules {
                zero_retention_only: Some(true),
                max_tokens_per_request: Some(10),
                ..Default::default()
            },
        )]);
        let e = check_model(&rules, Catalog::builtin(), "openai/gpt-4o").unwrap_err();
        assert_eq!(e.permission_rule().unwrap().0, "zero_retention_only");
        let mut req = ChatRequest::new("openai/gpt-4o", vec![Message::user("x")]);
        req.max_tokens = Some(11);
        assert_eq!(
            check_max_tokens(&rules, &req)
                .unwrap_err()
                .permission_rule()
                .unwrap(),
            ("max_tokens_per_request", Some(&lvl))
        );
    }
}
