//! The client's side of routing that learns from the organization's outcomes: what an
//! `auto` decision records so the collector can learn (the features, without text; the
//! propensity; whether it explored), and the exploration draw itself.
//!
//! Sans-IO: [`Learning::explore`] takes its random draws as arguments, so a test (or a
//! replay) decides them; the client draws them from the thread RNG.
//!
//! Arms: the learner compares the strong arm (the `heavy` tier) with the weak arm (the
//! lighter tiers), so the propensity a record carries is the probability that the
//! router's policy sent the call to the arm it went to. Per-model learning compares the
//! models inside a tier, so the record also carries the model's own propensity (its
//! tier's probability times its share of the tier, [`Learning::explore_model`]): the
//! same exploration share draws a model uniformly among the tier's usable candidates.

use std::sync::Arc;

use super::features::{self, N_FEATURES};
use super::learn::Row;
use super::lexical::{self, Hashing};
use super::scorer::{ScoreReport, Scorer, Tier};
pub use gaterouter_types::decision::LearningTrace;
use gaterouter_types::decision::RouteFeatures;
use gaterouter_types::types::ChatRequest;

/// Everything a client needs to route an organization's `auto` calls with learning: the
/// organization's weights (when it has learned some), its hashing and exploration share.
/// Built once per policy version (parsing and verifying weights is not per call).
#[derive(Debug, Clone)]
pub struct Learning {
    /// `auto` records carry [`RouteFeatures`].
    pub record_features: bool,
    /// Share of `auto` calls whose tier is drawn at random, in `[0, 0.5]`.
    pub explore: f64,
    /// Share of plain (not streamed) `auto` calls also sent to the other arm, in
    /// `[0, 1]` (shadow sampling; see [`Learning::shadow_at`]).
    pub shadow: f64,
    /// The organization's term hashing.
    pub hashing: Hashing,
    /// The organization's learned weights, when verified; `None`: the client's own.
    pub scorer: Option<Arc<Scorer>>,
    /// Fingerprint of `scorer`'s weights.
    pub version: Option<String>,
}

impl PartialEq for Learning {
    fn eq(&self, o: &Self) -> bool {
        self.record_features == o.record_features
            && self.explore.to_bits() == o.explore.to_bits()
            && self.shadow.to_bits() == o.shadow.to_bits()
            && self.hashing == o.hashing
            && self.version == o.version
    }
}

impl Eq for Learning {}

impl Learning {
    /// Draw exploration for one decision. `draws` are two uniform numbers in `[0, 1)`:
    /// the first decides whether to explore, the second which allowed tier. Rewrites
    /// `report.tier` when exploring; returns the trace (features not filled).
    pub fn explore(
        &self,
        report: &mut ScoreReport,
        allowed: &[Tier],
        draws: [f64; 2],
    ) -> LearningTrace {
        self.explore_at(self.explore, report, allowed, draws)
    }

    /// [`Learning::explore`] with another exploration share (0 while a budget is tight):
    /// the propensity follows the share actually used.
    pub fn explore_at(
        &self,
        share: f64,
        report: &mut ScoreReport,
        allowed: &[Tier],
        draws: [f64; 2],
    ) -> LearningTrace {
        let scored = report.tier;
        let tiers: Vec<Tier> = if allowed.is_empty() {
            Tier::ALL.to_vec()
        } else {
            allowed.to_vec()
        };
        let e = if tiers.len() > 1 {
            share.clamp(0.0, 0.5)
        } else {
            0.0
        };
        let explored = draws[0] < e;
        if explored {
            let i = ((draws[1] * tiers.len() as f64) as usize).min(tiers.len() - 1);
            report.tier = tiers[i];
        }
        // P(heavy) under this policy: exploitation's choice plus exploration's share.
        let heavy_allowed = tiers.contains(&Tier::Heavy);
        let p_heavy = (1.0 - e) * f64::from(u8::from(scored == Tier::Heavy))
            + if heavy_allowed {
                e / tiers.len() as f64
            } else {
                0.0
            };
        let propensity = if report.tier == Tier::Heavy {
            p_heavy
        } else {
            1.0 - p_heavy
        };
        // P(this tier): the model's propensity starts there; the within-tier draw
        // ([`Learning::explore_model`]) multiplies it by the model's share of its tier.
        let p_tier = (1.0 - e) * f64::from(u8::from(scored == report.tier))
            + if tiers.contains(&report.tier) {
                e / tiers.len() as f64
            } else {
                0.0
            };
        LearningTrace {
            explored,
            propensity,
            model_explored: false,
            model_propensity: p_tier,
            scored_tier: scored,
            features: None,
        }
    }

    /// Within-tier exploration for one decision: which of its tier's usable candidates
    /// serves. `odds[i]` is the probability the tier's own policy puts candidate `i`
    /// first (`[1, 0, ..]` when it ranks deterministically; load-spreading weights
    /// share it), candidate 0 being the policy's pick. With probability `share` (in
    /// `[0, 0.5]`; 0 while a budget is tight) a candidate is drawn uniformly instead, so
    /// every model of the tier keeps being observed and the learner can compare them.
    /// `draws` are two uniform numbers in `[0, 1)`: whether to explore, and which.
    /// Multiplies `trace.model_propensity` by the drawn candidate's probability.
    pub fn explore_model(
        share: f64,
        odds: &[f64],
        trace: &mut LearningTrace,
        draws: [f64; 2],
    ) -> usize {
        let k = odds.len();
        if k == 0 {
            return 0;
        }
        let e = if k > 1 { share.clamp(0.0, 0.5) } else { 0.0 };
        let explored = draws[0] < e;
        let index = if explored {
            ((draws[1] * k as f64) as usize).min(k - 1)
        } else {
            0
        };
        let p = (1.0 - e) * odds[index] + e / k as f64;
        trace.model_explored = explored && index != 0;
        trace.model_propensity = (trace.model_propensity * p).clamp(0.0, 1.0);
        index
    }

    /// Shadow sampling for one decision whose arm can be served on the other side too:
    /// the call's own outcome is then observed with probability `p + (1 − p)·s` (it went
    /// to its arm with probability `p`, or to the other one and was shadowed here with
    /// probability `s`), so `trace.propensity` becomes that, for every such call whether
    /// shadowed or not. When `draw < s` (a uniform number in `[0, 1)`), returns the
    /// shadow call's trace: the other arm, observed with probability `(1 − p) + p·s`.
    /// `share` is the shadow share actually used (0 while a budget is tight).
    pub fn shadow_at(
        &self,
        share: f64,
        trace: &mut LearningTrace,
        draw: f64,
    ) -> Option<LearningTrace> {
        let s = share.clamp(0.0, 1.0);
        let p = trace.propensity;
        trace.propensity = p + (1.0 - p) * s;
        // The shadow's model is its tier's policy pick (its within-tier share is applied
        // by the caller, as for any decision); the primary's model propensity leaves the
        // shadow path out (a lower bound: its inverse weight is capped by the learner).
        (draw < s).then(|| LearningTrace {
            explored: false,
            propensity: (1.0 - p) + p * s,
            model_explored: false,
            model_propensity: (1.0 - p) + p * s,
            scored_tier: trace.scored_tier,
            features: trace.features.clone(),
        })
    }
}

/// The tier a shadow call goes to: the other arm of `tier` among `allowed` (every tier
/// when empty): `heavy` for a lighter tier, else `standard` (or `light`). `None` when the
/// rules allow no tier on the other arm.
pub fn other_arm(tier: Tier, allowed: &[Tier]) -> Option<Tier> {
    let ok = |t: Tier| allowed.is_empty() || allowed.contains(&t);
    match tier {
        Tier::Heavy => [Tier::Standard, Tier::Light].into_iter().find(|t| ok(*t)),
        _ => ok(Tier::Heavy).then_some(Tier::Heavy),
    }
}

/// A request's features as a record carries them: normalized structural values in
/// millionths and the salted hashed terms as `[bucket, count]`.
pub fn features_of(req: &ChatRequest, hashing: Hashing) -> RouteFeatures {
    let f = features::extract(req);
    with_structural(req, hashing, &f.norm)
}

/// [`features_of`] reusing the structural features a score report already holds (the
/// client scores first, so the features are not extracted twice).
pub fn features_of_scored(
    report: &ScoreReport,
    req: &ChatRequest,
    hashing: Hashing,
) -> RouteFeatures {
    let mut norm = [0.0; N_FEATURES];
    for (n, c) in norm.iter_mut().zip(&report.features) {
        *n = c.normalized;
    }
    with_structural(req, hashing, &norm)
}

fn with_structural(req: &ChatRequest, hashing: Hashing, norm: &[f64; N_FEATURES]) -> RouteFeatures {
    let mut buckets = Vec::with_capacity(2 * 1024);
    lexical::for_each_term(req, hashing, |b| buckets.push(b));
    buckets.sort_unstable();
    let mut terms: Vec<[i64; 2]> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match terms.last_mut() {
            Some([lb, c]) if *lb == i64::from(b) => *c += 1,
            _ => terms.push([i64::from(b), 1]),
        }
    }
    RouteFeatures {
        bits: i64::from(hashing.bits),
        structural: norm.iter().map(|x| (x * 1e6).round() as i64).collect(),
        terms,
    }
}

/// The learner's design row of recorded features (the same row
/// [`super::learn::design_row`] builds from the request, up to the millionth rounding).
/// `None` when the record's features do not match `bits` or the feature count.
pub fn row_of(f: &RouteFeatures, bits: u8) -> Option<Row> {
    if f.bits != i64::from(bits) || f.structural.len() != N_FEATURES {
        return None;
    }
    let n: i64 = f.terms.iter().map(|[_, c]| *c).sum();
    let norm = 1.0 / (n.max(1) as f32).sqrt();
    let nb = 1u32 << bits;
    let mut row: Row = f
        .terms
        .iter()
        .map(|[b, c]| (*b as u32, *c as f32 * norm))
        .collect();
    for (j, v) in f.structural.iter().enumerate() {
        if *v != 0 {
            row.push((nb + j as u32, (*v as f64 / 1e6) as f32));
        }
    }
    Some(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::design_row;
    use gaterouter_types::types::Message;

    fn learning(explore: f64) -> Learning {
        Learning {
            record_features: true,
            explore,
            shadow: 0.0,
            hashing: Hashing { bits: 10, salt: 42 },
            scorer: None,
            version: None,
        }
    }

    fn report(tier: Tier) -> ScoreReport {
        ScoreReport {
            score: 0.5,
            tier,
            features: vec![],
            success: None,
        }
    }

    #[test]
    fn recorded_features_give_the_learners_row() {
        let req = ChatRequest::new(
            "auto",
            vec![Message::user(
                "A farmer sells 12 eggs at $3 each. How much?",
            )],
        );
        let h = Hashing {
            bits: 12,
            salt: 0xabc,
        };
        let f = features_of(&req, h);
        let scorer = Scorer::builtin().unwrap();
        assert_eq!(f, features_of_scored(&scorer.score(&req), &req, h));
        let row = row_of(&f, 12).expect("matching bits");
        let direct = design_row(&req, h);
        assert_eq!(row.len(), direct.len());
        for ((a, x), (b, y)) in row.iter().zip(&direct) {
            assert_eq!(a, b);
            assert!((x - y).abs() < 1e-5, "{x} {y}");
        }
        assert!(row_of(&f, 13).is_none());
        // No text: only numbers.
        let json = serde_json::to_string(&f).unwrap();
        assert!(!json.contains("farmer") && !json.contains("eggs"), "{json}");
    }

    #[test]
    fn exploration_draws_and_propensities() {
        let l = learning(0.3);
        let all = [Tier::Light, Tier::Standard, Tier::Heavy];
        // Not exploring: the scored tier, propensity of its arm.
        let mut r = report(Tier::Light);
        let t = l.explore(&mut r, &all, [0.5, 0.99]);
        assert!(!t.explored);
        assert_eq!(r.tier, Tier::Light);
        assert!((t.propensity - (1.0 - 0.1)).abs() < 1e-12);
        // Exploring to heavy from light: p(heavy) = 0.3 / 3.
        let mut r = report(Tier::Light);
        let t = l.explore(&mut r, &all, [0.1, 0.99]);
        assert!(t.explored);
        assert_eq!(r.tier, Tier::Heavy);
        assert_eq!(t.scored_tier, Tier::Light);
        assert!((t.propensity - 0.1).abs() < 1e-12);
        // Scored heavy, not exploring: p(heavy) = 0.7 + 0.1.
        let mut r = report(Tier::Heavy);
        let t = l.explore(&mut r, &all, [0.9, 0.0]);
        assert!((t.propensity - 0.8).abs() < 1e-12);
        // Heavy not allowed: never drawn, the lighter arm is certain.
        let mut r = report(Tier::Light);
        let t = l.explore(&mut r, &[Tier::Light, Tier::Standard], [0.0, 0.99]);
        assert_eq!(r.tier, Tier::Standard);
        assert!((t.propensity - 1.0).abs() < 1e-12);
        // No exploration at all (or none while a budget is tight): the arm is certain.
        let mut r = report(Tier::Standard);
        let t = learning(0.0).explore(&mut r, &all, [0.0, 0.0]);
        assert!(!t.explored && (t.propensity - 1.0).abs() < 1e-12);
        let mut r = report(Tier::Heavy);
        let t = l.explore_at(0.0, &mut r, &all, [0.0, 0.0]);
        assert!(!t.explored && r.tier == Tier::Heavy && (t.propensity - 1.0).abs() < 1e-12);
    }

    #[test]
    fn shadow_propensity_is_the_probability_the_arm_is_observed() {
        // Explore 0.2 over three tiers, shadow 0.3: for a prompt scored light, the heavy
        // arm's outcome is seen when exploration picks heavy or the call is shadowed.
        let l = learning(0.2);
        let all = [Tier::Light, Tier::Standard, Tier::Heavy];
        let mut rng = crate::learn::SplitMix::new(7);
        let n = 200_000;
        let (mut seen_heavy, mut seen_light) = (0usize, 0usize);
        let (mut q_heavy, mut q_light) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let mut r = report(Tier::Light);
            let mut t = l.explore_at(0.2, &mut r, &all, [rng.next_f64(), rng.next_f64()]);
            let shadow = l.shadow_at(0.3, &mut t, rng.next_f64());
            let heavy = r.tier == Tier::Heavy;
            let (own, other) = if heavy {
                (&mut q_heavy, &mut q_light)
            } else {
                (&mut q_light, &mut q_heavy)
            };
            own.push(t.propensity);
            if let Some(st) = &shadow {
                assert!(other_arm(r.tier, &all).is_some());
                assert!(!st.explored && st.scored_tier == Tier::Light);
                other.push(st.propensity);
            }
            seen_heavy += usize::from(heavy || shadow.is_some());
            seen_light += usize::from(!heavy || shadow.is_some());
        }
        // p(heavy) = 0.2 / 3; observed: p + (1 - p) * 0.3.
        let p = 0.2 / 3.0;
        let want_heavy = p + (1.0 - p) * 0.3;
        let want_light = (1.0 - p) + p * 0.3;
        for (qs, want, seen) in [
            (&q_heavy, want_heavy, seen_heavy),
            (&q_light, want_light, seen_light),
        ] {
            assert!(qs.iter().all(|q| (q - want).abs() < 1e-12), "{want}");
            let share = seen as f64 / f64::from(n);
            assert!(
                (share - want).abs() < 0.004,
                "observed {share}, propensity {want}"
            );
        }
        // No shadow share: the propensity is unchanged and nothing is drawn.
        let mut r = report(Tier::Heavy);
        let mut t = l.explore_at(0.0, &mut r, &all, [0.5, 0.5]);
        assert!(l.shadow_at(0.0, &mut t, 0.0).is_none());
        assert!((t.propensity - 1.0).abs() < 1e-12);
        // Every call shadowed: both arms always seen.
        let mut r = report(Tier::Standard);
        let mut t = l.explore_at(0.0, &mut r, &all, [0.5, 0.5]);
        let st = l.shadow_at(1.0, &mut t, 0.999).unwrap();
        assert!((t.propensity - 1.0).abs() < 1e-12 && (st.propensity - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_other_arm_is_within_the_rules() {
        let all: [Tier; 0] = [];
        assert_eq!(other_arm(Tier::Light, &all), Some(Tier::Heavy));
        assert_eq!(other_arm(Tier::Standard, &all), Some(Tier::Heavy));
        assert_eq!(other_arm(Tier::Heavy, &all), Some(Tier::Standard));
        assert_eq!(
            other_arm(Tier::Heavy, &[Tier::Light, Tier::Heavy]),
            Some(Tier::Light)
        );
        assert_eq!(other_arm(Tier::Light, &[Tier::Light, Tier::Standard]), None);
        assert_eq!(other_arm(Tier::Heavy, &[Tier::Heavy]), None);
    }

    #[test]
    fn the_empirical_share_matches_the_propensity() {
        let l = learning(0.2);
        let all = [Tier::Light, Tier::Standard, Tier::Heavy];
        let mut rng = crate::learn::SplitMix::new(7);
        let n = 30_000;
        let mut heavy = 0usize;
        let mut p = 0.0;
        for _ in 0..n {
            let mut r = report(Tier::Standard);
            let t = l.explore(&mut r, &all, [rng.next_f64(), rng.next_f64()]);
            if r.tier == Tier::Heavy {
                heavy += 1;
                p = t.propensity;
            }
        }
        let share = heavy as f64 / n as f64;
        assert!((share - p).abs() < 0.01, "{share} vs {p}");
    }

    #[test]
    fn a_models_propensity_is_the_probability_it_serves() {
        // Explore 0.2 over three tiers, scored standard; the standard tier has three
        // usable models, the policy's pick drawn 3:1 between the first two by load
        // weights. Each (tier, model) pair's empirical frequency matches the propensity
        // the trace gives it.
        let l = learning(0.2);
        let all = [Tier::Light, Tier::Standard, Tier::Heavy];
        let mut rng = crate::learn::SplitMix::new(11);
        let n = 60_000;
        let mut seen: std::collections::BTreeMap<(Tier, usize), (usize, f64)> =
            std::collections::BTreeMap::new();
        let mut explored_models = 0usize;
        for _ in 0..n {
            let mut r = report(Tier::Standard);
            let mut t = l.explore(&mut r, &all, [rng.next_f64(), rng.next_f64()]);
            // The policy's own draw among the standard tier's models (as `select`).
            let (odds, order): (Vec<f64>, [usize; 3]) = if r.tier == Tier::Standard {
                if rng.next_f64() < 0.75 {
                    (vec![0.75, 0.25, 0.0], [0, 1, 2])
                } else {
                    (vec![0.25, 0.75, 0.0], [1, 0, 2])
                }
            } else {
                (vec![1.0, 0.0], [0, 1, 2])
            };
            let i =
                Learning::explore_model(l.explore, &odds, &mut t, [rng.next_f64(), rng.next_f64()]);
            explored_models += usize::from(t.model_explored);
            let e = seen.entry((r.tier, order[i])).or_insert((0, 0.0));
            e.0 += 1;
            e.1 = t.model_propensity;
        }
        assert!(explored_models > 0);
        let mut total = 0.0;
        for ((tier, model), (count, p)) in &seen {
            let share = *count as f64 / n as f64;
            assert!(
                (share - p).abs() < 0.01,
                "{tier:?} model {model}: {share} vs {p}"
            );
            total += p;
        }
        // Every (tier, model) pair that can serve was seen, and their probabilities sum to 1.
        assert_eq!(seen.len(), 2 + 2 + 3);
        assert!((total - 1.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn no_exploration_keeps_the_policys_pick() {
        let mut t = learning(0.0).explore(&mut report(Tier::Light), &[], [0.9, 0.1]);
        assert!((t.model_propensity - 1.0).abs() < 1e-12);
        assert_eq!(
            Learning::explore_model(0.0, &[1.0, 0.0, 0.0], &mut t, [0.0, 0.99]),
            0
        );
        assert!((t.model_propensity - 1.0).abs() < 1e-12 && !t.model_explored);
        // One usable model: nothing to explore, whatever the share.
        assert_eq!(Learning::explore_model(0.5, &[1.0], &mut t, [0.0, 0.99]), 0);
        assert!((t.model_propensity - 1.0).abs() < 1e-12);
    }
}
