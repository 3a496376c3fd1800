//! Binary-size probe for the alternative: `size_probe_no_tokens` plus tiktoken-rs counting
//! with both encodings (what the embedded encodings would cost with tiktoken-rs instead).
fn main() {
    let usage = gaterouter::Usage::new(1000, 200, 0, 0, 0);
    let cost = gaterouter::pricing::cost(&usage, "openai/gpt-4o", Default::default())
        .map(|c| c.total_micros)
        .unwrap_or(0);
    let arg = std::env::args().collect::<Vec<_>>().join(" ");
    let n = tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(&arg)
        .len()
        + tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary("x")
            .len();
    println!("{cost} {n}");
}
