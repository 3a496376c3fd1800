#!/usr/bin/env bash
# Node SDK per-call overhead: gaterouter (napi addon, release build) side by side with the
# official `openai` npm SDK, both against the same provider emulator (release build).
#
#   bash bench/run_node_overhead.sh              # N=2000 sequential calls per client and mode
#   N=5000 bash bench/run_node_overhead.sh
#
# Builds: the emulator and the addon in release (`napi build --release`, which replaces
# node/gaterouter.<platform>.node; `npx napi build --platform --js native.js --dts
# native.d.ts` restores the debug build the tests use). The openai SDK is installed with
# npm into bench/node_overhead_deps/node_modules (git-ignored), pinned in its package.json.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

cargo build --release -q -p gaterouter-emulator
(cd node && npm ci --no-audit --no-fund --silent && npx napi build --platform --release --js native.js --dts native.d.ts)
(cd bench/node_overhead_deps && npm install --no-audit --no-fund --silent --no-package-lock)

GATEROUTER_EMULATOR_BIN="$PWD/target/release/gaterouter-emulator" \
    node bench/node_overhead.mjs "${N:-2000}"
