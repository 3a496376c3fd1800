//! Binary-size probe: prices a usage and counts a text, so both encodings are linked in.
//! Compare with `size_probe_no_tokens`, which only prices.
fn main() {
    let usage = gaterouter::Usage::new(1000, 200, 0, 0, 0);
    let cost = gaterouter::pricing::cost(&usage, "openai/gpt-4o", Default::default())
        .map(|c| c.total_micros)
        .unwrap_or(0);
    let tokens = gaterouter::tokens::count_text(
        &std::env::args().collect::<Vec<_>>().join(" "),
        "openai/gpt-4o",
    )
    .tokens
        + gaterouter::tokens::count_text("x", "openai/gpt-4").tokens;
    println!("{cost} {tokens}");
}
