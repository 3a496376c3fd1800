#!/usr/bin/env bash
# Honest ingest under sustained abuse (bench/RESULTS.md, "Security hardening"): one
# collector process (SQLite, release build, default settings), 4 honest keys posting
# signed batches of 100 back to back, one phase per abuse (none, forged, unknown-key,
# overflow, malformed, slow-connections) running alongside them. Prints honest records/s,
# batch p50/p99, attack requests and the collector's CPU and RSS per phase; fails if an
# honest batch is refused or a record is lost. The test is
# tests/reliability/tests/abuse_load.rs (its 2-second version runs in `cargo test --workspace`).
#   bash bench/abuse.sh [SECONDS_PER_PHASE]     (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
export GATEROUTER_ABUSE_SECS="${1:-20}"
cargo build -q --release -p gaterouter-collector --bin gaterouter-collector
cargo test -q --release -p gaterouter-reliability --test abuse_load -- --nocapture 2>&1 | grep -E '^ABUSE|test result|panicked|assert'
