//! Replays every committed input — `corpus/<target>/*` (the seeds and what the fuzzer
//! kept) and `regressions/<target>/*` (inputs that once crashed) — through the target
//! functions, without libFuzzer, on stable: `bash fuzz/replay.sh`.

use std::path::Path;

#[test]
fn every_committed_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut ran = 0;
    for target in gaterouter_fuzz::TARGETS {
        let corpus = gaterouter_fuzz::files_in(&root.join("corpus").join(target));
        assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ has no seed");
        for file in corpus.iter().chain(&gaterouter_fuzz::files_in(&root.join("regressions").join(target))) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            // A panic names the file first, so a failure is reproducible with
            // `cargo +nightly fuzz run <target> <file>`.
            eprintln!("{target}: {}", file.strip_prefix(root).unwrap_or(file).display());
            gaterouter_fuzz::run(target, &data);
            ran += 1;
        }
    }
    eprintln!("replayed {ran} inputs");
}

#[test]
fn every_target_has_a_binary() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap_or_default();
    for target in gaterouter_fuzz::TARGETS {
        assert!(manifest.contains(&format!("name = \"{target}\"")), "fuzz/Cargo.toml has no [[bin]] {target}");
    }
}
