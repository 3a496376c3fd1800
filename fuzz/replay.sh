#!/usr/bin/env bash
# Replays every committed fuzz input (fuzz/corpus/<target>/*, fuzz/regressions/<target>/*)
# through the fuzz targets' functions on stable Rust, without libFuzzer: a plain
# `cargo test` of the fuzz crate. Builds into the root target/ (same dev profile and
# locked dependency versions as the workspace), reusing the dependencies the workspace
# build compiled with the same features. Usage: bash fuzz/replay.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# The spool target writes a temp directory per input: keep it in memory when possible.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
cargo test --locked --manifest-path fuzz/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-target}" "$@"
