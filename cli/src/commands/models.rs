//! `gaterouter models`

use gaterouter::{Config, Error};

/// Run `models`.
pub fn run(config: Config) -> Result<(), Error> {
    println!("{:<12} {:<10} {:<50} key", "provider", "kind", "base_url");
    for p in config.resolved_providers("config")?.values() {
        let key = match (&p.api_key, &p.api_key_env) {
            (Some(_), _) => "inline".to_owned(),
            (None, Some(var)) if std::env::var(var).is_ok_and(|v| !v.is_empty()) => {
                format!("${var} (set)")
            }
            (None, Some(var)) => format!("${var} (not set)"),
            (None, None) => "none needed".to_owned(),
        };
        println!(
            "{:<12} {:<10} {:<50} {key}",
            p.name,
            p.kind.as_str(),
            p.base_url
        );
    }
    if config.models.is_empty() {
        println!(
            "\nmodels: any `provider/model` of the providers above (no [[models]] allow-list)"
        );
    } else {
        println!("\nmodels:");
        for m in &config.models {
            println!("  {}", m.id);
        }
    }
    let r = &config.routing;
    println!("\n`auto` routes by complexity ({:?} policy):", r.policy);
    for (tier, list) in [
        ("light", &r.light),
        ("standard", &r.standard),
        ("heavy", &r.heavy),
    ] {
        println!("  {tier:<9} {}", list.join(", "));
    }
    Ok(())
}
