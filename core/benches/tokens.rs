//! Token counting and cost-estimation benchmarks (`cargo bench -p gaterouter --bench tokens`).
//!
//! - `count_corpus/*`: throughput on the fixed ~1 MB mixed corpus `bench/corpus.txt`
//!   (prose, CJK, code) for the chosen implementation (bpe-openai, parallel above
//!   256 KiB), bpe-openai single-threaded, and the alternative tiktoken-rs.
//! - `estimate_cost/*`: a ~2k-token chat request, warm (repeated texts hit the count
//!   cache, as in a chat loop), the cold count of the same text, and the one-pass
//!   `Counting::Fast` estimate (always cold: it keeps no cache).

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gaterouter::pricing::Catalog;
use gaterouter::tokens::Encoding;
use gaterouter::{ChatRequest, Message};

fn corpus() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/corpus.txt");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run bench/make_corpus.py)", p.display()))
}

fn count_corpus(c: &mut Criterion) {
    let text = corpus();
    let mut g = c.benchmark_group("count_corpus");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    for (name, enc) in [
        ("o200k", Encoding::O200kBase),
        ("cl100k", Encoding::Cl100kBase),
    ] {
        g.bench_function(format!("gaterouter_{name}"), |b| {
            b.iter(|| enc.count_uncached(black_box(&text)))
        });
    }
    let bpe_o = bpe_openai::o200k_base();
    g.bench_function("bpe_openai_single_thread_o200k", |b| {
        b.iter(|| bpe_o.count(black_box(text.as_str())))
    });
    let tk_o = tiktoken_rs::o200k_base_singleton();
    g.bench_function("tiktoken_rs_o200k", |b| {
        b.iter(|| tk_o.encode_ordinary(black_box(&text)).len())
    });
    let tk_c = tiktoken_rs::cl100k_base_singleton();
    g.bench_function("tiktoken_rs_cl100k", |b| {
        b.iter(|| tk_c.encode_ordinary(black_box(&text)).len())
    });
    g.finish();
}

/// A chat request of about 2,000 o200k tokens: a long system prompt, history, a question.
fn two_k_request() -> ChatRequest {
    let text = corpus();
    let mut cut = 8_600;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    let system = &text[..cut];
    ChatRequest::new(
        "openai/gpt-4o",
        vec![
            Message::system(system),
            Message::user("Summarize the assert statement rules in two sentences."),
            Message::assistant(
                "An assert statement checks a condition and raises AssertionError when it is false; it is removed under -O.",
            ),
            Message::user("And what happens to the message expression when optimization is on?"),
        ],
    )
}

fn estimate_cost(c: &mut Criterion) {
    let req = two_k_request();
    let cat = Catalog::builtin();
    let est = cat.estimate_cost(&req, "openai/gpt-4o").unwrap();
    eprintln!("estimate_cost request: {} prompt tokens", est.prompt.tokens);
    let mut g = c.benchmark_group("estimate_cost");
    g.bench_function("2k_tokens_warm", |b| {
        b.iter(|| cat.estimate_cost(black_box(&req), "openai/gpt-4o").unwrap())
    });
    let fast = gaterouter::pricing::EstimateOptions {
        counting: gaterouter::tokens::Counting::Fast,
        ..Default::default()
    };
    let est_fast = cat.estimate_cost_with(&req, "openai/gpt-4o", fast).unwrap();
    eprintln!(
        "fast estimate: {} prompt tokens (tokenizer: {})",
        est_fast.prompt.tokens, est.prompt.tokens
    );
    // The fast mode keeps no cache: every iteration is a cold estimate.
    g.bench_function("2k_tokens_fast_cold", |b| {
        b.iter(|| {
            cat.estimate_cost_with(black_box(&req), "openai/gpt-4o", fast)
                .unwrap()
        })
    });
    let system = req.messages[0].text();
    g.bench_function("2k_tokens_cold_count_only", |b| {
        b.iter(|| Encoding::O200kBase.count_uncached(black_box(&system)))
    });
    g.finish();
}

criterion_group!(benches, count_corpus, estimate_cost);
criterion_main!(benches);
