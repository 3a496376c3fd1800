//! Times token counting for `bench/tokens_vs_tiktoken.py` and reports first-count latency
//! and peak memory. Usage:
//!   token_count <corpus> <impl> <encoding> <iterations>
//! impl: gaterouter (parallel above 256 KiB) | gaterouter-single (one thread) | bpe-single
//! (bpe-openai) | tiktoken-rs; encoding: o200k | cl100k. Build with `--features bench-peers`.
//! Prints one JSON line.

use std::time::Instant;

use gaterouter::tokens::Encoding;

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let start = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!(
            "usage: token_count <corpus> <gaterouter|gaterouter-single|bpe-single|tiktoken-rs> <o200k|cl100k> <iterations>"
        );
        std::process::exit(2);
    }
    let enc = if args[3] == "cl100k" {
        Encoding::Cl100kBase
    } else {
        Encoding::O200kBase
    };
    let count = |t: &str| -> usize {
        match args[2].as_str() {
            "gaterouter" => enc.count_uncached(t),
            "gaterouter-single" => match enc {
                Encoding::O200kBase => gaterouter_tokenizer::o200k_base().count(t),
                Encoding::Cl100kBase => gaterouter_tokenizer::cl100k_base().count(t),
            },
            "bpe-single" => match enc {
                Encoding::O200kBase => bpe_openai::o200k_base().count(t),
                Encoding::Cl100kBase => bpe_openai::cl100k_base().count(t),
            },
            "tiktoken-rs" => match enc {
                Encoding::O200kBase => tiktoken_rs::o200k_base_singleton().encode_ordinary(t).len(),
                Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton()
                    .encode_ordinary(t)
                    .len(),
            },
            other => panic!("unknown impl {other}"),
        }
    };
    // First count after process start: includes decoding the embedded encoding.
    let first_tokens = count("Hello, world!");
    let first_count_ms = start.elapsed().as_secs_f64() * 1e3;
    let text = std::fs::read_to_string(&args[1]).expect("read corpus");
    let iters: u32 = args[4].parse().expect("iterations");
    let tokens = count(&text); // warm-up
    let t0 = Instant::now();
    for _ in 0..iters {
        assert_eq!(count(std::hint::black_box(&text)), tokens);
    }
    let secs = (t0.elapsed().as_secs_f64() / f64::from(iters.max(1))).max(1e-9);
    println!(
        "{{\"impl\":\"{}\",\"encoding\":\"{}\",\"tokens\":{tokens},\"bytes\":{},\"seconds_per_pass\":{secs:.6},\"mb_per_s\":{:.2},\"first_count_ms\":{first_count_ms:.2},\"first_count_tokens\":{},\"peak_rss_kb\":{}}}",
        args[2],
        args[3],
        text.len(),
        text.len() as f64 / secs / 1e6,
        first_tokens,
        peak_rss_kb()
    );
}
