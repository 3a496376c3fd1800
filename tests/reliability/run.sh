#!/usr/bin/env bash
# Reliability suites: crash, collector faults, provider faults, load, budget races,
# security. `bash tests/reliability/run.sh` runs the short version (also part of
# tests/run_all.sh); `--full` runs the counts reported in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if [ "${1:-}" = "--full" ]; then export GATEROUTER_RELIABILITY=full; fi
cargo build -q -p gaterouter-emulator -p gaterouter-collector -p gaterouter-reliability --bins
GATEROUTER_TEST_REQUIRE_POSTGRES="${GATEROUTER_TEST_REQUIRE_POSTGRES:-0}" \
    cargo test -p gaterouter-reliability -- --nocapture --test-threads=1
