#!/usr/bin/env bash
# Builds the cdylib, the provider emulator and the usage collector, regenerates the Kotlin bindings, and runs the
# Kotlin suite on the JVM (Maven fetches kotlinc, JNA, coroutines and JUnit from Maven
# Central into ~/.m2 on first run). Usage: bash bindings/kotlin/run-tests.sh [mvn args]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}/debug"
cargo build -q -p gaterouter-ffi -p gaterouter-emulator
# The real collector (SQLite) that the mobile suite reports usage records to.
cargo build -q -p gaterouter-collector --bin gaterouter-collector
# The CLI, for FirstHourTest (`gaterouter keys new`, `gaterouter admin apply` as README.md shows).
cargo build -q -p gaterouter-cli --bin gaterouter
# Regenerate in place: tests always run against code matching the library. Whether the
# committed copy is stale is checked separately (tests/run_all.sh diffs a fresh copy).
bash bindings/generate.sh
mvn -B --no-transfer-progress -f bindings/kotlin/pom.xml test -Dgaterouter.target="$TARGET" "$@"
