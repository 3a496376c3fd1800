//! Router metrics on labeled prompts: quality vs. share of calls sent to the strong
//! model, PGR, APGR, CPT, and the strong share needed for 95% of always-strong quality;
//! plus baselines (random, length-only) and subject-wise train/test splits.
//!
//! A router is a score per prompt; at strong share `s` the `s·n` highest-scoring
//! prompts go to the strong model. Tied scores are split evenly: the quality curve is
//! interpolated linearly across a tie group, which is the expectation over random
//! tie-breaking. A constant score is therefore exactly the random router's expected value
//! (PGR(s) = s, APGR = 0.5), computed analytically rather than by sampling seeds.

use serde::{Deserialize, Serialize};

use super::data::LabeledPrompt;
use super::scorer::Scorer;
use gaterouter_types::error::{Error, Result};

/// One point of the quality curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Share of calls sent to the strong model, in `[0, 1]`.
    pub strong_share: f64,
    /// Mean quality at that share.
    pub quality: f64,
    /// Performance gap recovered at that share.
    pub pgr: f64,
}

/// Router metrics on one set of prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Number of prompts.
    pub n: usize,
    /// Mean quality when every call goes to the weak model.
    pub quality_weak: f64,
    /// Mean quality when every call goes to the strong model.
    pub quality_strong: f64,
    /// Mean PGR over strong shares 0%, 1%, ..., 100% (random ≈ 0.5, perfect ≈ 1).
    pub apgr: f64,
    /// Smallest strong share reaching PGR 0.5.
    pub cpt50: f64,
    /// Smallest strong share reaching PGR 0.8.
    pub cpt80: f64,
    /// Smallest strong share reaching 95% of always-strong quality (0 when always-weak already does).
    pub share_for_95pct_quality: f64,
    /// Quality and PGR at 0%, 1%, ..., 100% strong.
    pub curve: Vec<CurvePoint>,
}

/// The cumulative gain curve `G(x)` = extra quality (summed) from sending the top `x`
/// prompts to the strong model; piecewise linear with breaks at tie-group ends.
struct GainCurve {
    /// (x, G(x)) at 0 and at the end of every tie group, x increasing.
    points: Vec<(f64, f64)>,
    n: f64,
    sum_weak: f64,
    total_gain: f64,
}

impl GainCurve {
    fn new(scores: &[f64], weak: &[f64], strong: &[f64]) -> Self {
        let mut idx: Vec<usize> = (0..scores.len()).collect();
        let key = |i: usize| {
            if scores[i].is_nan() {
                f64::NEG_INFINITY
            } else {
                scores[i]
            }
        };
        idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
        let mut points = Vec::with_capacity(idx.len() + 1);
        points.push((0.0, 0.0));
        let (mut x, mut g) = (0.0, 0.0);
        let mut k = 0;
        while k < idx.len() {
            let s = key(idx[k]);
            while k < idx.len() && key(idx[k]) == s {
                g += strong[idx[k]] - weak[idx[k]];
                x += 1.0;
                k += 1;
            }
            points.push((x, g));
        }
        GainCurve {
            points,
            n: scores.len() as f64,
            sum_weak: weak.iter().sum(),
            total_gain: g,
        }
    }

    /// G at any x in [0, n].
    fn at(&self, x: f64) -> f64 {
        let j = self.points.partition_point(|p| p.0 < x);
        if j == 0 {
            return 0.0;
        }
        let Some(&(x1, g1)) = self.points.get(j) else {
            return self.total_gain;
        };
        let (x0, g0) = self.points[j - 1];
        if x1 <= x0 {
            g1
        } else {
            g0 + (g1 - g0) * (x - x0) / (x1 - x0)
        }
    }

    /// Smallest x with G(x) >= target (n if never; cannot happen for target <= G(n)).
    fn first_reaching(&self, target: f64) -> f64 {
        if target <= 0.0 {
            return 0.0;
        }
        for w in self.points.windows(2) {
            let ((x0, g0), (x1, g1)) = (w[0], w[1]);
            if g0 >= target {
                return x0;
            }
            if g1 >= target {
                return x0 + (target - g0) / (g1 - g0) * (x1 - x0);
            }
        }
        self.n
    }
}

/// Metrics of a router given its scores and the per-prompt weak/strong qualities.
pub fn evaluate_scores(scores: &[f64], weak: &[f64], strong: &[f64]) -> Result<EvalReport> {
    let n = scores.len();
    if n == 0 || weak.len() != n || strong.len() != n {
        return Err(Error::InvalidRequest {
            field: Some("prompts".into()),
            message: format!(
                "evaluation needs the same non-zero number of scores ({n}), weak ({}) and strong ({}) results",
                weak.len(),
                strong.len()
            ),
        });
    }
    let c = GainCurve::new(scores, weak, strong);
    if c.total_gain <= 0.0 {
        return Err(Error::InvalidRequest {
            field: Some("strong_score".into()),
            message: "the strong model is not better than the weak one on these prompts, so PGR is undefined: evaluate on a set where it is".into(),
        });
    }
    let nf = n as f64;
    let quality_weak = c.sum_weak / nf;
    let quality_strong = (c.sum_weak + c.total_gain) / nf;
    let curve: Vec<CurvePoint> = (0..=100)
        .map(|k| {
            let s = f64::from(k) / 100.0;
            let g = c.at(s * nf);
            CurvePoint {
                strong_share: s,
                quality: (c.sum_weak + g) / nf,
                pgr: g / c.total_gain,
            }
        })
        .collect();
    let apgr = curve.iter().map(|p| p.pgr).sum::<f64>() / curve.len() as f64;
    let target95 = (0.95 * quality_strong - quality_weak) * nf;
    Ok(EvalReport {
        n,
        quality_weak,
        quality_strong,
        apgr,
        cpt50: c.first_reaching(0.5 * c.total_gain) / nf,
        cpt80: c.first_reaching(0.8 * c.total_gain) / nf,
        share_for_95pct_quality: c.first_reaching(target95) / nf,
        curve,
    })
}

/// Metrics of a router (any score function) on labeled prompts.
pub fn evaluate(
    prompts: &[LabeledPrompt],
    score: &dyn Fn(&LabeledPrompt) -> f64,
) -> Result<EvalReport> {
    let mut s = Vec::with_capacity(prompts.len());
    let mut w = Vec::with_capacity(prompts.len());
    let mut st = Vec::with_capacity(prompts.len());
    for p in prompts {
        let (ws, ss) = p.labels()?;
        s.push(score(p));
        w.push(ws);
        st.push(ss);
    }
    evaluate_scores(&s, &w, &st)
}

/// The length-only baseline: longer prompts go to the strong model first. Length is the
/// number of characters of the messages' text (the "length only (characters)").
pub fn length_score(p: &LabeledPrompt) -> f64 {
    use gaterouter_types::types::{Content, ContentPart};
    let mut n = 0usize;
    for m in &p.request.messages {
        match &m.content {
            Some(Content::Text(t)) => n += t.chars().count(),
            Some(Content::Parts(parts)) => {
                for part in parts {
                    if let ContentPart::Text { text } = part {
                        n += text.chars().count();
                    }
                }
            }
            None => {}
        }
    }
    n as f64
}

/// A router and its two baselines on the same prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The scorer under test.
    pub router: EvalReport,
    /// The random router's expected value (exact, see the module doc).
    pub random: EvalReport,
    /// Route by estimated prompt tokens only.
    pub length: EvalReport,
}

/// Evaluate a scorer against the random and length-only baselines.
pub fn compare(prompts: &[LabeledPrompt], scorer: &Scorer) -> Result<Comparison> {
    Ok(Comparison {
        router: evaluate(prompts, &|p| scorer.score_only(&p.request))?,
        random: evaluate(prompts, &|_| 0.0)?,
        length: evaluate(prompts, &length_score)?,
    })
}

/// Upper bounds for context: no router of the request text can beat these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    /// Knows every prompt's outcome: sends prompts in order of `strong - weak` (PGR
    /// exceeds 1 at middle shares because it also skips prompts where the weak model wins).
    pub oracle: EvalReport,
    /// Knows only each source's (subject's) true mean benefit on these very prompts and
    /// routes whole subjects in that order, ties split evenly inside a subject. A router
    /// that recognizes the kind of question perfectly, but nothing about the single
    /// question, reaches this.
    pub subject_oracle: EvalReport,
}

/// The two ceilings of [`Ceilings`] on labeled prompts.
pub fn ceilings(prompts: &[LabeledPrompt]) -> Result<Ceilings> {
    let mut sums: std::collections::HashMap<&str, (f64, f64)> = std::collections::HashMap::new();
    for p in prompts {
        let (w, s) = p.labels()?;
        let e = sums.entry(p.source.as_str()).or_default();
        e.0 += s - w;
        e.1 += 1.0;
    }
    let subject_mean = |p: &LabeledPrompt| sums.get(p.source.as_str()).map_or(0.0, |(g, n)| g / n);
    Ok(Ceilings {
        oracle: evaluate(prompts, &|p| p.labels().map_or(0.0, |(w, s)| s - w))?,
        subject_oracle: evaluate(prompts, &subject_mean)?,
    })
}

/// 64-bit FNV-1a, for seeded, platform-independent subject shuffles.
fn fnv1a(seed: u64, s: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // final avalanche so that nearby seeds give unrelated orders
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Split by source (subject), never by row: sources are shuffled by `seed` and taken
/// into the test part until it holds at least `test_fraction` of the rows. Returns
/// `(train, test)`; no source appears in both.
pub fn split_by_source(
    prompts: &[LabeledPrompt],
    seed: u64,
    test_fraction: f64,
) -> (Vec<LabeledPrompt>, Vec<LabeledPrompt>) {
    let mut sources: Vec<(&str, usize)> = Vec::new();
    for p in prompts {
        match sources.iter_mut().find(|(s, _)| *s == p.source) {
            Some((_, c)) => *c += 1,
            None => sources.push((&p.source, 1)),
        }
    }
    sources.sort_by_key(|(s, _)| (fnv1a(seed, s), *s));
    let want = (test_fraction.clamp(0.0, 1.0) * prompts.len() as f64).ceil() as usize;
    let mut test_sources: Vec<&str> = Vec::new();
    let mut taken = 0;
    for (s, c) in &sources {
        if taken >= want {
            break;
        }
        test_sources.push(s);
        taken += c;
    }
    let (test, train): (Vec<_>, Vec<_>) = prompts
        .iter()
        .cloned()
        .partition(|p| test_sources.contains(&p.source.as_str()));
    (train, test)
}

/// Split by row within every source: each source's rows are ordered by a seeded hash of
/// their id and the first `test_fraction` of them go to the test part. Unlike
/// [`split_by_source`] the test part holds new prompts of subjects the fit has seen: the
/// case of a deployment refitting on its own traffic.
pub fn split_by_row(
    prompts: &[LabeledPrompt],
    seed: u64,
    test_fraction: f64,
) -> (Vec<LabeledPrompt>, Vec<LabeledPrompt>) {
    let frac = test_fraction.clamp(0.0, 1.0);
    let mut keyed: Vec<(&str, u64, usize)> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| (p.source.as_str(), fnv1a(seed, &p.id), i))
        .collect();
    keyed.sort_unstable();
    let mut test = vec![false; prompts.len()];
    let mut start = 0;
    while start < keyed.len() {
        let src = keyed[start].0;
        let end = start + keyed[start..].iter().take_while(|k| k.0 == src).count();
        let take = (frac * (end - start) as f64).round() as usize;
        for k in &keyed[start..start + take] {
            test[k.2] = true;
        }
        start = end;
    }
    let (te, tr): (Vec<_>, Vec<_>) = prompts.iter().zip(&test).partition(|(_, t)| **t);
    (
        tr.into_iter().map(|(p, _)| p.clone()).collect(),
        te.into_iter().map(|(p, _)| p.clone()).collect(),
    )
}

/// How a labeled file is split into a part to fit on and a part to score on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Holdout {
    /// Rows at random (seeded): the test part holds new prompts of the same kinds — the
    /// case of an organization calibrating on its own traffic.
    #[default]
    Random,
    /// Whole sources (`source` field) at random: no source on both sides.
    Source,
    /// Sources with a `/` (`mmlu/<subject>`, `mt_bench/<category>`) held out whole,
    /// sources without one (`gsm8k`: one benchmark of like prompts) split by row: unseen
    /// subjects plus new prompts of a seen benchmark.
    SubjectOrRow,
}

impl Holdout {
    /// Parse `random`, `source` or `subject_or_row`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "random" => Ok(Holdout::Random),
            "source" => Ok(Holdout::Source),
            "subject_or_row" | "subject-or-row" => Ok(Holdout::SubjectOrRow),
            other => Err(Error::InvalidRequest {
                field: Some("holdout".into()),
                message: format!("unknown holdout `{other}`: use random, source or subject_or_row"),
            }),
        }
    }
}

/// Split `(train, test)` with about `train_fraction` of the rows in train. Random: rows
/// ordered by a seeded hash of their id (ties by position), the first ones train, so the
/// train part is also the replay order of `route simulate`. Source / SubjectOrRow: whole
/// groups (a source, or a row of an unsplit source) by a seeded hash of their key.
pub fn split(
    prompts: &[LabeledPrompt],
    holdout: Holdout,
    seed: u64,
    train_fraction: f64,
) -> (Vec<LabeledPrompt>, Vec<LabeledPrompt>) {
    let f = train_fraction.clamp(0.0, 1.0);
    match holdout {
        Holdout::Random => {
            let mut order: Vec<(u64, usize)> = prompts
                .iter()
                .enumerate()
                .map(|(i, p)| (fnv1a(seed, &format!("{}\u{1}{i}", p.id)), i))
                .collect();
            order.sort_unstable();
            let k = (f * prompts.len() as f64).round() as usize;
            let train = order[..k]
                .iter()
                .map(|(_, i)| prompts[*i].clone())
                .collect();
            let test = order[k..]
                .iter()
                .map(|(_, i)| prompts[*i].clone())
                .collect();
            (train, test)
        }
        Holdout::Source => {
            let (train, test) = split_by_source(prompts, seed, 1.0 - f);
            (train, test)
        }
        Holdout::SubjectOrRow => {
            // group key: the source when it has a `/`, else the row's id
            let key = |p: &LabeledPrompt| {
                if p.source.contains('/') {
                    p.source.clone()
                } else {
                    format!("{}\u{1}{}", p.source, p.id)
                }
            };
            let threshold = (f * u64::MAX as f64) as u64;
            prompts
                .iter()
                .cloned()
                .partition(|p| fnv1a(seed, &key(p)) < threshold)
        }
    }
}

/// Leave one source family out: `(train, test)` where test is every prompt of `family`
/// (`gsm8k`, `mmlu`, `mt_bench`).
pub fn split_family(
    prompts: &[LabeledPrompt],
    family: &str,
) -> (Vec<LabeledPrompt>, Vec<LabeledPrompt>) {
    let (test, train) = prompts.iter().cloned().partition(|p| p.family() == family);
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    // Four prompts: only #0 gains from the strong model (+1), the rest tie.
    // Q_weak = 2/4 = 0.5, Q_strong = 3/4 = 0.75.
    const WEAK: [f64; 4] = [0.0, 1.0, 0.0, 1.0];
    const STRONG: [f64; 4] = [1.0, 1.0, 0.0, 1.0];

    #[test]
    fn perfect_router() {
        let r = evaluate_scores(&[0.9, 0.1, 0.2, 0.3], &WEAK, &STRONG).expect("eval");
        assert!(close(r.quality_weak, 0.5) && close(r.quality_strong, 0.75));
        // PGR(s) = min(1, 4s): at 25% all gain recovered; 0.5 reached at 12.5%.
        assert!(close(r.curve[10].pgr, 0.4));
        assert!(close(r.curve[25].pgr, 1.0));
        assert!(close(r.cpt50, 0.125));
        assert!(close(r.cpt80, 0.2));
        // APGR = (sum_{k=0}^{25} 4k/100 + 75) / 101 = (13 + 75) / 101
        assert!(close(r.apgr, 88.0 / 101.0), "{}", r.apgr);
        // 95% of 0.75 = 0.7125 -> gain 0.2125*4 = 0.85 of the single +1 -> share 0.2125
        assert!(close(r.share_for_95pct_quality, 0.2125));
    }

    #[test]
    fn inverted_router() {
        let r = evaluate_scores(&[0.0, 0.9, 0.8, 0.7], &WEAK, &STRONG).expect("eval");
        // nothing gained until the last quarter: PGR(s) = max(0, 4s - 3)
        assert!(close(r.curve[75].pgr, 0.0));
        assert!(close(r.curve[90].pgr, 0.6));
        assert!(close(r.cpt50, 0.875));
        // APGR = sum_{k=75}^{100} (4k/100 - 3) / 101 = 13 / 101
        assert!(close(r.apgr, 13.0 / 101.0), "{}", r.apgr);
    }

    #[test]
    fn random_router_expected_value() {
        let r = evaluate_scores(&[0.5; 4], &WEAK, &STRONG).expect("eval");
        for p in &r.curve {
            assert!(close(p.pgr, p.strong_share));
        }
        assert!(close(r.apgr, 0.5));
        assert!(close(r.cpt50, 0.5) && close(r.cpt80, 0.8));
        assert!(close(r.share_for_95pct_quality, 0.85));
    }

    #[test]
    fn losses_make_pgr_non_monotone_and_cpt_takes_first_crossing() {
        // gains in score order: +1, -1, +1 ; total +1
        let r =
            evaluate_scores(&[3.0, 2.0, 1.0], &[0.0, 1.0, 0.0], &[1.0, 0.0, 1.0]).expect("eval");
        assert!(close(r.curve[33].pgr, 0.99));
        assert!(close(r.cpt50, 0.5 / 3.0));
        assert!(close(r.cpt80, 0.8 / 3.0));
    }

    #[test]
    fn ceilings_rank_by_true_benefit() {
        let mk = |id: usize, src: &str, w: f64, s: f64| LabeledPrompt {
            id: id.to_string(),
            source: src.to_owned(),
            request: gaterouter_types::types::ChatRequest::new(
                "auto",
                vec![gaterouter_types::types::Message::user("x")],
            ),
            weak_model: None,
            strong_model: None,
            weak_score: Some(w),
            strong_score: Some(s),
            scores: Default::default(),
        };
        // source a: gains +1, 0 ; source b: gains 0, 0 -> subject oracle sends a first
        let ps = vec![
            mk(0, "b", 1.0, 1.0),
            mk(1, "a", 1.0, 1.0),
            mk(2, "b", 0.0, 0.0),
            mk(3, "a", 0.0, 1.0),
        ];
        let c = ceilings(&ps).expect("ceilings");
        assert!(close(c.oracle.cpt50, 0.125));
        // the gain is spread over source a's two rows: PGR(s) = 2s up to s = 0.5
        assert!(close(c.subject_oracle.cpt50, 0.25));
        assert!(close(c.subject_oracle.curve[50].pgr, 1.0));
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(evaluate_scores(&[], &[], &[]).is_err());
        assert!(evaluate_scores(&[1.0], &[1.0, 0.0], &[1.0]).is_err());
        let e = evaluate_scores(&[1.0, 2.0], &[1.0, 1.0], &[1.0, 0.0])
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("not better"), "{e}");
        // NaN scores rank last instead of panicking
        let r = evaluate_scores(&[f64::NAN, 0.1, 0.2, 0.3], &WEAK, &STRONG).expect("eval");
        assert!(close(r.cpt50, 0.875));
    }

    #[test]
    fn splits_are_by_source_and_deterministic() {
        let mk = |id: usize, src: &str| LabeledPrompt {
            id: id.to_string(),
            source: src.to_owned(),
            request: gaterouter_types::types::ChatRequest::new(
                "auto",
                vec![gaterouter_types::types::Message::user("x")],
            ),
            weak_model: None,
            strong_model: None,
            weak_score: Some(0.0),
            strong_score: Some(1.0),
            scores: Default::default(),
        };
        let srcs = [
            "gsm8k",
            "mmlu/a",
            "mmlu/b",
            "mmlu/c",
            "mt_bench/x",
            "mmlu/d",
        ];
        let ps: Vec<LabeledPrompt> = (0..60).map(|i| mk(i, srcs[i % srcs.len()])).collect();
        let (tr, te) = split_by_source(&ps, 1, 0.5);
        assert_eq!(tr.len() + te.len(), 60);
        assert!(te.len() >= 30);
        assert!(tr.iter().all(|p| te.iter().all(|q| q.source != p.source)));
        assert_eq!(split_by_source(&ps, 1, 0.5).1, te);
        let differs = (2..10).any(|s| split_by_source(&ps, s, 0.5).1 != te);
        assert!(differs, "seeds should change the split");
        let (tr, te) = split_by_row(&ps, 1, 0.5);
        assert_eq!((tr.len(), te.len()), (30, 30));
        for src in srcs {
            assert_eq!(te.iter().filter(|p| p.source == src).count(), 5, "{src}");
        }
        assert!(tr.iter().all(|p| te.iter().all(|q| q.id != p.id)));
        assert_eq!(split_by_row(&ps, 1, 0.5).1, te);
        assert!((2..10).any(|s| split_by_row(&ps, s, 0.5).1 != te));
        // split(): no subject on both sides for Source; SubjectOrRow keeps every `/`
        // source whole and splits the others by row; Random is a partition by row.
        for seed in 1..6 {
            let (tr, te) = split(&ps, Holdout::Source, seed, 0.5);
            assert_eq!(tr.len() + te.len(), 60);
            assert!(!tr.is_empty() && !te.is_empty());
            assert!(
                tr.iter().all(|p| te.iter().all(|q| q.source != p.source)),
                "seed {seed}: a source on both sides"
            );
            let (tr, te) = split(&ps, Holdout::SubjectOrRow, seed, 0.5);
            assert_eq!(tr.len() + te.len(), 60);
            assert!(tr.iter().all(|p| te.iter().all(|q| q.id != p.id)));
            assert!(
                tr.iter()
                    .filter(|p| p.source.contains('/'))
                    .all(|p| te.iter().all(|q| q.source != p.source)),
                "seed {seed}: a subject on both sides"
            );
            let gsm_test = te.iter().filter(|p| p.source == "gsm8k").count();
            assert!(
                gsm_test > 0 && gsm_test < 10,
                "gsm8k is split by row: {gsm_test} of 10 in test"
            );
            let (tr, te) = split(&ps, Holdout::Random, seed, 0.3);
            assert_eq!((tr.len(), te.len()), (18, 42));
            assert!(tr.iter().all(|p| te.iter().all(|q| q.id != p.id)));
            assert_eq!(
                split(&ps, Holdout::Random, seed, 0.3).0,
                tr,
                "deterministic"
            );
        }
        assert_ne!(
            split(&ps, Holdout::Random, 1, 0.5).0,
            split(&ps, Holdout::Random, 2, 0.5).0
        );
        assert!(Holdout::parse("subject_or_row").is_ok() && Holdout::parse("rows").is_err());
        let (tr, te) = split_family(&ps, "mmlu");
        assert_eq!(te.len(), 40);
        assert!(tr.iter().all(|p| p.family() != "mmlu"));
    }
}
