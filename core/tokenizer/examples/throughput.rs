//! `cargo run --release -p gaterouter-tokenizer --example throughput -- bench/corpus.txt`:
//! first count after start, then single-thread MB/s on a file (best of 5), both encodings.
use std::time::Instant;

fn main() {
    let start = Instant::now();
    let first = gaterouter_tokenizer::o200k_base().count("Hello, world!");
    let first_ms = start.elapsed().as_secs_f64() * 1e3;
    println!("first o200k count ({first} tokens) {first_ms:.1} ms after start");
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bench/corpus.txt".into());
    let text = std::fs::read_to_string(&path).expect("read the text file");
    for (name, tok) in [
        ("o200k_base", gaterouter_tokenizer::o200k_base()),
        ("cl100k_base", gaterouter_tokenizer::cl100k_base()),
    ] {
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..5 {
            let t = Instant::now();
            n = tok.count(std::hint::black_box(&text));
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name}: {n} tokens, {:.1} MB/s",
            text.len() as f64 / best / 1e6
        );
    }
}
