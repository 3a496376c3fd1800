#!/usr/bin/env bash
# Runs every test of every language. Installs what it needs (it is the README's test
# command and what CI runs). Usage: bash tests/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

echo "== Rust: workspace tests (debug build, one target/)"
cargo test --workspace --all-targets --no-fail-fast
cargo test --workspace --doc
