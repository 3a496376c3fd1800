//! Labeled prompts in JSONL: the calibration/evaluation input and `route score` input.
//!
//! One JSON object a line:
//! `{"id", "source", "messages": [...], "weak_model", "strong_model", "weak_score", "strong_score"}`.
//! Only `messages` is required; `tools` and `max_tokens` may be given to score a full
//! request. Scores are needed for evaluation and calibration, not for scoring.
//!
//! More than two models (optional, backwards compatible): `"scores": {"model": score, ...}`
//! gives every candidate's quality in `[0, 1]`. A line then needs no `weak_score` /
//! `strong_score`: they are read from `scores[weak_model]` and `scores[strong_model]`
//! (explicit `weak_score` / `strong_score` win). `route calibrate` also fits each model's
//! success on its own and reports how much of it the request text explains.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::scorer::{Scorer, Tier};
use gaterouter_types::error::{Error, Result};
use gaterouter_types::types::{ChatRequest, Message, Tool};

/// One prompt with (optionally) how well a weak and a strong model answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledPrompt {
    /// Identifier (`line-N` when the file gives none).
    pub id: String,
    /// Where it comes from: `gsm8k`, `mmlu/<subject>`, `mt_bench/<category>`... (empty if unknown).
    pub source: String,
    /// The request as the router would see it.
    pub request: ChatRequest,
    /// The weak model's name, if given.
    pub weak_model: Option<String>,
    /// The strong model's name, if given.
    pub strong_model: Option<String>,
    /// Quality of the weak model's answer in `[0, 1]`.
    pub weak_score: Option<f64>,
    /// Quality of the strong model's answer in `[0, 1]`.
    pub strong_score: Option<f64>,
    /// Quality of every scored model's answer in `[0, 1]`, by model name (the optional
    /// `scores` map; empty for two-model files).
    pub scores: std::collections::BTreeMap<String, f64>,
}

impl LabeledPrompt {
    /// The family of the source: the part before the first `/` (`mmlu/anatomy` -> `mmlu`).
    pub fn family(&self) -> &str {
        self.source.split('/').next().unwrap_or("")
    }

    /// Both scores, or an error naming the prompt. Without `weak_score` / `strong_score`
    /// they are looked up in `scores` under `weak_model` / `strong_model`.
    pub fn labels(&self) -> Result<(f64, f64)> {
        let from_map = |m: &Option<String>| m.as_ref().and_then(|m| self.scores.get(m)).copied();
        match (
            self.weak_score.or_else(|| from_map(&self.weak_model)),
            self.strong_score.or_else(|| from_map(&self.strong_model)),
        ) {
            (Some(w), Some(s)) => Ok((w, s)),
            _ => Err(Error::InvalidRequest {
                field: Some("weak_score/strong_score".into()),
                message: format!(
                    "prompt `{}` has no weak_score/strong_score (nor scores for weak_model/strong_model): evaluation and calibration need both",
                    self.id
                ),
            }),
        }
    }
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    id: Option<Id>,
    #[serde(default)]
    source: String,
    messages: Vec<Message>,
    #[serde(default)]
    tools: Vec<Tool>,
    #[serde(default, alias = "max_completion_tokens")]
    max_tokens: Option<u32>,
    #[serde(default)]
    weak_model: Option<String>,
    #[serde(default)]
    strong_model: Option<String>,
    #[serde(default)]
    weak_score: Option<f64>,
    #[serde(default)]
    strong_score: Option<f64>,
    #[serde(default)]
    scores: std::collections::BTreeMap<String, f64>,
}

/// Ids may be strings or numbers in third-party files.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Str(String),
    Num(serde_json::Number),
}

/// Parse one JSONL line (`lineno` is 1-based, `name` names the file in errors).
pub fn parse_line(line: &str, lineno: usize, name: &str) -> Result<LabeledPrompt> {
    let bad = |msg: String| Error::InvalidRequest {
        field: Some(format!("{name}:{lineno}")),
        message: msg,
    };
    let de = &mut serde_json::Deserializer::from_str(line);
    let l: Line = serde_path_to_error::deserialize(de).map_err(|e| {
        bad(format!(
            "{name} line {lineno}, field `{}`: {}",
            e.path(),
            e.inner()
        ))
    })?;
    for (field, v) in [
        ("weak_score", l.weak_score),
        ("strong_score", l.strong_score),
    ] {
        if let Some(v) = v {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(format!(
                    "{name} line {lineno}: {field} {v} is outside [0, 1]: rescale scores to [0, 1]"
                )));
            }
        }
    }
    for (model, v) in &l.scores {
        if !(0.0..=1.0).contains(v) {
            return Err(bad(format!(
                "{name} line {lineno}: scores[{model:?}] {v} is outside [0, 1]: rescale scores to [0, 1]"
            )));
        }
    }
    if l.messages.is_empty() {
        return Err(bad(format!(
            "{name} line {lineno}: messages is empty: give at least one user message"
        )));
    }
    let id = match l.id {
        Some(Id::Str(s)) => s,
        Some(Id::Num(n)) => n.to_string(),
        None => format!("line-{lineno}"),
    };
    let mut request = ChatRequest::new("auto", l.messages);
    request.tools = l.tools;
    request.max_tokens = l.max_tokens;
    Ok(LabeledPrompt {
        id,
        source: l.source,
        request,
        weak_model: l.weak_model,
        strong_model: l.strong_model,
        weak_score: l.weak_score,
        strong_score: l.strong_score,
        scores: l.scores,
    })
}

/// Read labeled prompts from a JSONL reader (blank lines are skipped).
pub fn read_jsonl(reader: impl BufRead, name: &str) -> Result<Vec<LabeledPrompt>> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::InvalidRequest {
            field: Some(format!("{name}:{}", i + 1)),
            message: format!("cannot read {name}: {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_line(&line, i + 1, name)?);
    }
    Ok(out)
}

/// Read labeled prompts from a JSONL file.
pub fn load_jsonl(path: impl AsRef<Path>) -> Result<Vec<LabeledPrompt>> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| Error::InvalidRequest {
        field: Some(name.clone()),
        message: format!("cannot open {name}: {e}: give the path of a JSONL file of prompts"),
    })?;
    read_jsonl(std::io::BufReader::new(f), &name)
}

/// One output line of [`score_jsonl`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredLine {
    /// The prompt's id.
    pub id: String,
    /// Its score.
    pub score: f64,
    /// Its tier.
    pub tier: Tier,
}

/// Score every prompt of a JSONL stream and write `{"id":..,"score":..,"tier":..}` lines
/// (for `gaterouter route score IN.jsonl`). Labels are optional. Returns the count.
pub fn score_jsonl(
    scorer: &Scorer,
    input: impl BufRead,
    name: &str,
    mut out: impl Write,
) -> Result<usize> {
    let mut n = 0;
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| Error::InvalidRequest {
            field: Some(format!("{name}:{}", i + 1)),
            message: format!("cannot read {name}: {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let p = parse_line(&line, i + 1, name)?;
        let score = scorer.score_only(&p.request);
        let rec = ScoredLine {
            id: p.id,
            score,
            tier: scorer.tier(score),
        };
        let json = serde_json::to_string(&rec).map_err(|e| Error::InvalidRequest {
            field: None,
            message: format!("cannot serialize score: {e}"),
        })?;
        writeln!(out, "{json}").map_err(|e| Error::InvalidRequest {
            field: None,
            message: format!("cannot write scores: {e}"),
        })?;
        n += 1;
    }
    Ok(n)
}

/// How the sources (`source` field) of a sequence of prompts are ordered: how many runs
/// (maximal stretches of one source) it has, against how many a random order of the same
/// prompts would give. A file sorted by subject has about one run per source; shuffled, it
/// has nearly one per prompt. Replaying a grouped file as traffic (`route simulate`)
/// learns each subject in turn and ends on the last ones, unlike an organization's mixed
/// traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceOrder {
    /// Distinct sources (an empty `source` counts as one).
    pub sources: usize,
    /// Maximal stretches of consecutive prompts from one source.
    pub runs: usize,
    /// Expected runs over random orders of the same prompts:
    /// `1 + (n − 1) · (1 − Σ nₛ(nₛ − 1) / (n(n − 1)))`.
    pub expected_runs: f64,
}

impl SourceOrder {
    /// Count the runs of `prompts` in their order.
    pub fn of(prompts: &[LabeledPrompt]) -> Self {
        let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for p in prompts {
            *counts.entry(p.source.as_str()).or_default() += 1;
        }
        let runs = prompts
            .windows(2)
            .filter(|w| w[0].source != w[1].source)
            .count()
            + usize::from(!prompts.is_empty());
        let n = prompts.len() as f64;
        let expected_runs = if prompts.len() < 2 {
            n
        } else {
            let same: f64 = counts
                .values()
                .map(|&c| c as f64 * (c as f64 - 1.0))
                .sum::<f64>()
                / (n * (n - 1.0));
            1.0 + (n - 1.0) * (1.0 - same)
        };
        SourceOrder {
            sources: counts.len(),
            runs,
            expected_runs,
        }
    }

    /// Grouped by source: at least two sources, and fewer than half the runs a random
    /// order would give (a shuffled file has about as many as expected; one sorted by
    /// source, one per source).
    pub fn grouped(&self) -> bool {
        self.sources >= 2 && (self.runs as f64) < 0.5 * self.expected_runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dev_format_and_defaults() {
        let text = r#"{"id": "gsm8k-0", "source": "gsm8k", "messages": [{"role": "user", "content": "2+2?"}], "weak_model": "w", "strong_model": "s", "weak_score": 1.0, "strong_score": 0.0}

{"messages": [{"role": "user", "content": "hi"}], "id": 7}
"#;
        let v = read_jsonl(text.as_bytes(), "t.jsonl").expect("parses");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].family(), "gsm8k");
        assert_eq!(v[0].labels().expect("labels"), (1.0, 0.0));
        assert_eq!(v[1].id, "7");
        assert!(v[1].labels().is_err());
    }

    #[test]
    fn a_scores_map_carries_more_than_two_models() {
        // Backwards compatible: old lines parse as before (empty map); a `scores` map can
        // stand in for weak_score/strong_score, and explicit fields win.
        let text = r#"{"messages": [{"role": "user", "content": "q"}], "weak_model": "a", "strong_model": "c", "scores": {"a": 0.0, "b": 0.5, "c": 1.0}}
{"messages": [{"role": "user", "content": "q"}], "weak_model": "a", "strong_model": "c", "weak_score": 0.25, "scores": {"a": 0.0, "c": 1.0}}
{"messages": [{"role": "user", "content": "q"}], "weak_model": "a", "strong_model": "z", "scores": {"a": 0.0}}
{"messages": [{"role": "user", "content": "q"}], "weak_score": 1.0, "strong_score": 0.0}"#;
        let v = read_jsonl(text.as_bytes(), "m.jsonl").expect("parses");
        assert_eq!(v[0].labels().expect("from the map"), (0.0, 1.0));
        assert_eq!(v[0].scores.len(), 3);
        assert_eq!(v[1].labels().expect("explicit wins"), (0.25, 1.0));
        assert!(v[2].labels().is_err(), "no score for the strong model");
        assert!(v[3].scores.is_empty());
        assert_eq!(v[3].labels().expect("two-model line"), (1.0, 0.0));
        let e = read_jsonl(
            r#"{"messages": [{"role": "user", "content": "q"}], "scores": {"a": 2.0}}"#.as_bytes(),
            "m.jsonl",
        )
        .expect_err("out of range")
        .to_string();
        assert!(e.contains("scores") && e.contains("[0, 1]"), "{e}");
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = read_jsonl("{\"messages\":[]}\n{\"messages\": 3}".as_bytes(), "x.jsonl")
            .expect_err("must fail")
            .to_string();
        assert!(
            e.contains("x.jsonl line 1") && e.contains("messages"),
            "{e}"
        );
        let e = read_jsonl("\n{\"messages\": 3}".as_bytes(), "x.jsonl")
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("line 2") && e.contains("messages"), "{e}");
        let e = parse_line(
            r#"{"messages":[{"role":"user","content":"a"}],"weak_score":7}"#,
            3,
            "y",
        )
        .expect_err("must fail")
        .to_string();
        assert!(e.contains("weak_score") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn score_jsonl_writes_one_line_per_prompt() {
        let scorer = Scorer::builtin().expect("builtin");
        let input = "{\"id\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n{\"id\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"Prove it step by step\"}]}\n";
        let mut out = Vec::new();
        assert_eq!(
            score_jsonl(&scorer, input.as_bytes(), "in", &mut out).expect("scores"),
            2
        );
        let lines: Vec<ScoredLine> = String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines[0].id, "a");
        assert_eq!(lines[1].id, "b");
        assert!(lines.iter().all(|l| (0.0..=1.0).contains(&l.score)));
    }

    fn with_sources(sources: &[&str]) -> Vec<LabeledPrompt> {
        sources
            .iter()
            .enumerate()
            .map(|(i, src)| {
                parse_line(
                    &format!(
                        r#"{{"source":"{src}","messages":[{{"role":"user","content":"q{i}"}}]}}"#
                    ),
                    i + 1,
                    "t",
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn source_order_tells_a_sorted_file_from_a_shuffled_one() {
        let sorted: Vec<&str> = ["a", "b", "c", "d"]
            .iter()
            .flat_map(|s| std::iter::repeat_n(*s, 50))
            .collect();
        let o = SourceOrder::of(&with_sources(&sorted));
        assert_eq!((o.sources, o.runs), (4, 4));
        // 4 equal sources: a random order has 1 + 199 · (1 − 4·50·49/(200·199)) runs
        assert!((o.expected_runs - (1.0 + 199.0 * (1.0 - 9800.0 / 39800.0))).abs() < 1e-9);
        assert!(o.grouped());
        // interleaved (a, b, c, d, a, ...): as many runs as prompts, not grouped
        let mixed: Vec<&str> = (0..200).map(|i| sorted[(i % 4) * 50]).collect();
        let o = SourceOrder::of(&with_sources(&mixed));
        assert_eq!(o.runs, 200);
        assert!(!o.grouped(), "{o:?}");
        // a seeded shuffle of the sorted file is not grouped either
        let (shuffled, _) =
            crate::eval::split(&with_sources(&sorted), crate::eval::Holdout::Random, 7, 1.0);
        assert!(!SourceOrder::of(&shuffled).grouped());
        // one source, or none: nothing to group
        assert!(!SourceOrder::of(&with_sources(&["x"; 30])).grouped());
        assert!(!SourceOrder::of(&with_sources(&[""; 30])).grouped());
        assert_eq!(SourceOrder::of(&[]).runs, 0);
    }
}
