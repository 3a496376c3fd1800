//! Binary-size probe for the peer: `size_probe_no_tokens` plus bpe-openai counting with
//! both encodings (what its precomputed tables cost). Needs `--features bench-peers`.
fn main() {
    let usage = gaterouter::Usage::new(1000, 200, 0, 0, 0);
    let cost = gaterouter::pricing::cost(&usage, "openai/gpt-4o", Default::default())
        .map(|c| c.total_micros)
        .unwrap_or(0);
    let arg = std::env::args().collect::<Vec<_>>().join(" ");
    let n = bpe_openai::o200k_base().count(&arg) + bpe_openai::cl100k_base().count("x");
    println!("{cost} {n}");
}
