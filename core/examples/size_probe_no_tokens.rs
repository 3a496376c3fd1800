//! Binary-size probe without token counting: the same program as `size_probe` minus the
//! counting call, so the linker drops the embedded encodings.
fn main() {
    let usage = gaterouter::Usage::new(1000, 200, 0, 0, 0);
    let cost = gaterouter::pricing::cost(&usage, "openai/gpt-4o", Default::default())
        .map(|c| c.total_micros)
        .unwrap_or(0);
    println!("{cost} {}", std::env::args().count());
}
