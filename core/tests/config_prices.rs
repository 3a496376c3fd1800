//! Price overrides read from a config file (`[prices."provider/model"]`): the config
//! layer (`gaterouter::config`) parses them, the catalog (`gaterouter-pricing`) applies
//! them. Moved here from pricing's unit tests when pricing became its own crate.

#![allow(clippy::unwrap_used)]

use gaterouter::Config;
use gaterouter::pricing::Catalog;

#[test]
fn overrides_from_toml_name_the_field() {
    // From TOML via the config: the per-token typo is caught with the field path.
    let e = Config::from_toml_str("[prices.\"openai/gpt-4o\"]\ninput = 0.0000025\n", "gr.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("input") && e.contains("per-token") && e.contains("write 2.5"),
        "{e}"
    );
    let e = Config::from_toml_str("[prices.\"openai/gpt-4o\"]\nimput = 2.5\n", "gr.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("imput"), "{e}");
    let cfg = Config::from_toml_str(
        "[prices.\"openai/gpt-4o\"]\ninput = 2.4\noutput = \"9.5\"\n",
        "gr.toml",
    )
    .unwrap();
    let c = Catalog::builtin().with_overrides(&cfg.prices).unwrap();
    assert_eq!(
        c.models["openai/gpt-4o"].input.micros_per_million(),
        2_400_000
    );
    assert_eq!(
        c.models["openai/gpt-4o"].output.micros_per_million(),
        9_500_000
    );
}
