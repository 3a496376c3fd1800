#!/usr/bin/env bash
# Regenerates the committed Kotlin and Swift code from the gaterouter-ffi cdylib with the
# in-repo uniffi-bindgen (same uniffi version as the scaffolding).
# Usage: bash bindings/generate.sh [OUT_ROOT]   (default: bindings/, i.e. update the
# committed code; tests/run_all.sh passes a temp dir and diffs it against the commit).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bindings}"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}/debug"
case "$(uname -s)" in
  Darwin) LIB="$TARGET/libgaterouter_ffi.dylib" ;;
  *) LIB="$TARGET/libgaterouter_ffi.so" ;;
esac
cargo build -q -p gaterouter-ffi -p uniffi-bindgen
BINDGEN="$TARGET/uniffi-bindgen"
rm -rf "$OUT/kotlin/generated" "$OUT/swift/generated"
# --no-format: the output must not depend on whether ktlint/swiftformat are installed.
"$BINDGEN" generate "$LIB" --language kotlin --out-dir "$OUT/kotlin/generated" --no-format
"$BINDGEN" generate "$LIB" --language swift --out-dir "$OUT/swift/generated" --no-format
