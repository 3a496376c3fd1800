#!/usr/bin/env bash
# Builds the ffi library, the provider emulator and the usage collector on the host, then
# runs the Swift package's XCTest suite with `swift test` against the committed generated
# bindings. On Linux without Swift it installs the toolchain first (a Debian trixie root,
# see install-toolchain.sh; minutes the first time, reused after) and runs inside it.
# Usage: bash bindings/swift/run-tests.sh [swift test args, e.g. --filter VectorsTests]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
TARGET="$(mkdir -p "${CARGO_TARGET_DIR:-$PWD/target}" && cd "${CARGO_TARGET_DIR:-$PWD/target}" && pwd)/debug"
cargo build -q -p gaterouter-ffi -p gaterouter-emulator
cargo build -q -p gaterouter-collector --bin gaterouter-collector
link=()
if [ "$(uname -s)" != Darwin ]; then
    # Linux: link libgaterouter_ffi.so from the cargo target dir and find it at run time.
    link=(-Xlinker -L"$TARGET" -Xlinker -rpath -Xlinker "$TARGET")
fi
GATEROUTER_TARGET_DIR="$TARGET" bash bindings/swift/in-root.sh bindings/swift \
    swift test "${link[@]}" "$@"
