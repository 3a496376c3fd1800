//! Scoring cost vs. request length (goal: < 20 us median at 2k tokens, linear growth).
//! Run: `cargo bench -p gaterouter --bench routing`.
//!
//! Two groups: `routing_score` measures wall time (criterion's default) and
//! `routing_score_cpu` measures the benchmark thread's on-CPU time (Linux
//! `/proc/thread-self/schedstat`), which stays meaningful on a loaded, shared machine
//! where wall time also counts the time the thread spends waiting for a core.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gaterouter::pricing::Catalog;
use gaterouter::routing::learning::{Learning, features_of_scored};
use gaterouter::routing::lexical::Hashing;
use gaterouter::routing::select::{Availability, SelectInput, select};
use gaterouter::routing::{Exclusion, RoutingConfig, Scorer, Tier};
use gaterouter::{ChatRequest, Message};

/// A realistic mixed prompt: prose, a list, numbers, a little code and math.
const CHUNK: &str = "Please analyze the following report step by step and explain why revenue fell. \
The company sold 1,250 units in Q1 and 980 units in Q2, while costs rose by 12.5%.\n\
1. Compare both quarters.\n2. You must cite at least 3 figures.\n\
```python\ndef growth(a, b):\n    return (b - a) / a\n```\n\
If x^2 + y = 10 and y = 1, what is x? Answer in a detailed paragraph, and then summarize. ";

const SIZES: [usize; 4] = [200, 2_000, 20_000, 200_000];

fn request(tokens: usize) -> ChatRequest {
    let chars = tokens * 4;
    let mut text = String::with_capacity(chars + CHUNK.len());
    while text.len() < chars {
        text.push_str(CHUNK);
    }
    text.truncate(chars);
    ChatRequest::new(
        "auto",
        vec![
            Message::system("You are a careful analyst."),
            Message::user(text),
        ],
    )
}

/// Every model usable, no latency history: selection's work without I/O.
struct AllUsable;
impl Availability for AllUsable {
    fn check(&self, _: &str) -> Result<(), (Exclusion, String)> {
        Ok(())
    }
    fn latency_ms(&self, _: &str) -> Option<f64> {
        None
    }
}

fn wall(c: &mut Criterion) {
    let scorer = Scorer::builtin().expect("builtin weights");
    let mut g = c.benchmark_group("routing_score");
    for tokens in SIZES {
        let req = request(tokens);
        g.throughput(Throughput::Elements(tokens as u64));
        g.bench_with_input(BenchmarkId::new("score", tokens), &req, |b, req| {
            b.iter(|| scorer.score(black_box(req)))
        });
    }
    g.finish();
    // The whole decision of an `auto` request at 2k tokens: score + select (the issue's
    // goal), and with an organization that learns: + exploration draw + the record's
    // features (salted term pass).
    let catalog = Catalog::builtin();
    let cfg = RoutingConfig::default();
    let learning = Learning {
        record_features: true,
        explore: 0.05,
        shadow: 0.0,
        hashing: Hashing {
            bits: 14,
            salt: 0x1234_5678,
        },
        scorer: None,
        version: None,
    };
    let req = request(2_000);
    let mut g = c.benchmark_group("routing_decide");
    g.bench_function("score_select/2000", |b| {
        b.iter(|| {
            let input = SelectInput {
                req: black_box(&req),
                score: Some(scorer.score(&req)),
                cfg: &cfg,
                catalog,
                accounts: None,
            };
            select(input, &AllUsable).expect("a model")
        })
    });
    g.bench_function("score_select_learning/2000", |b| {
        b.iter(|| {
            let mut report = scorer.score(black_box(&req));
            let features = features_of_scored(&report, &req, learning.hashing);
            let trace = learning.explore(&mut report, Tier::ALL, [0.5, 0.5]);
            let input = SelectInput {
                req: &req,
                score: Some(report),
                cfg: &cfg,
                catalog,
                accounts: None,
            };
            (select(input, &AllUsable).expect("a model"), trace, features)
        })
    });
    g.finish();
}

/// The thread clock ticks coarsely (it is updated at scheduler events), so one
/// iteration here scores the request `200_000 / tokens` times: every iteration covers
/// 200k tokens and lasts milliseconds. Divide the reported time by that repeat count
/// for the per-request figure; the throughput (tokens/s) needs no correction.
fn cpu(c: &mut Criterion<CpuTime>) {
    let scorer = Scorer::builtin().expect("builtin weights");
    let mut g = c.benchmark_group("routing_score_cpu");
    g.sample_size(30);
    for tokens in SIZES {
        let req = request(tokens);
        let repeat = 200_000 / tokens;
        g.throughput(Throughput::Elements((tokens * repeat) as u64));
        g.bench_with_input(
            BenchmarkId::new(format!("score_x{repeat}"), tokens),
            &req,
            |b, req| {
                b.iter(|| {
                    for _ in 0..repeat {
                        black_box(scorer.score(black_box(req)));
                    }
                })
            },
        );
    }
    // The whole decision (score + select) at 2k tokens, on-CPU: the issue's goal,
    // readable on a loaded machine too.
    let catalog = Catalog::builtin();
    let cfg = RoutingConfig::default();
    let req = request(2_000);
    g.throughput(Throughput::Elements(2_000 * 100));
    g.bench_function("score_select_x100/2000", |b| {
        b.iter(|| {
            for _ in 0..100 {
                let input = SelectInput {
                    req: black_box(&req),
                    score: Some(scorer.score(&req)),
                    cfg: &cfg,
                    catalog,
                    accounts: None,
                };
                black_box(select(input, &AllUsable).expect("a model"));
            }
        })
    });
    g.finish();
}

/// On-CPU time of the calling thread, in nanoseconds.
struct CpuTime;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = Duration;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, i: u64) -> Duration {
        Duration::from_nanos(thread_cpu_ns().saturating_sub(i))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns")
        } else if ns < 1e6 {
            (1e-3, "µs")
        } else if ns < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match *throughput {
            Throughput::Bytes(n)
            | Throughput::BytesDecimal(n)
            | Throughput::Elements(n)
            | Throughput::Bits(n) => n as f64,
        };
        for v in values {
            *v = per * 1e9 / *v / 1e6;
        }
        "M/s"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
