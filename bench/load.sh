#!/usr/bin/env bash
# Load figures for bench/RESULTS.md ("Load"): N clients x M concurrent calls through the
# SDK against the emulator and one collector (SQLite), both separate processes, release
# build. Prints calls/s, p50/p99 SDK overhead, ingest lag, client and collector RSS,
# lost and duplicated records (must be 0).
#   bash bench/load.sh [SECONDS] [CLIENTS] [CONCURRENCY]     (default 60 8 16)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
export GATEROUTER_LOAD_SECS="${1:-60}" GATEROUTER_LOAD_CLIENTS="${2:-8}" GATEROUTER_LOAD_CONCURRENCY="${3:-16}"
cargo build -q --release -p gaterouter-emulator -p gaterouter-collector --bins
cargo test -q --release -p gaterouter-reliability --test load -- --nocapture 2>&1 | grep -E '^load:|test result|panicked|assert'
