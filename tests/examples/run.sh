#!/usr/bin/env bash
# Runs every example under examples/ against the provider emulator (started here, stopped
# at the end): Rust (examples/rust, the workspace member `gaterouter-example`), Python (needs the package installed in $GATEROUTER_VENV, default
# target/py-venv, as tests/run_all.sh does) and Node (the addon built in node/, as
# tests/run_all.sh does; the TypeScript example is type-checked with node/'s tsc).
# Usage: bash tests/examples/run.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${GATEROUTER_VENV:-$ROOT/target/py-venv}"
TMP="$(mktemp -d)"
EMU_PID=""
cleanup() { [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

# The workspace build the tests use (a no-op after them; building one package alone would
# resolve other features and rebuild the dependency tree): emulator and the Rust example.
cargo build -q --workspace --all-targets --exclude gaterouter-python --exclude gaterouter-node
. "$ROOT/tests/lib/emulator.sh"
start_emulator "$TARGET/debug/gaterouter-emulator" "$TMP/emu.out"
export GATEROUTER_EMULATOR_URL="$EMU"
echo "emulator at $GATEROUTER_EMULATOR_URL"
passed=0; failed=0
step() { # name, command...
    local name="$1"; shift
    if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}

step "rust (cargo run -p gaterouter-example)" "$TARGET/debug/gaterouter-example"
step "python/quickstart.py" "$VENV/bin/python" "$ROOT/examples/python/quickstart.py"

# Node resolves `gaterouter` from node_modules: link the package as an app would have it.
mkdir -p "$TMP/app/node_modules"
ln -s "$ROOT/node" "$TMP/app/node_modules/gaterouter"
cp "$ROOT/examples/node/quickstart.mjs" "$ROOT/examples/node/quickstart.ts" "$TMP/app/"
step "node/quickstart.mjs" node "$TMP/app/quickstart.mjs"
step "node/quickstart.ts (tsc --strict)" node "$ROOT/node/node_modules/typescript/bin/tsc" --strict --noEmit --target es2022 \
    --module nodenext --moduleResolution nodenext "$TMP/app/quickstart.ts"

echo "examples: $passed passed, $failed failed"
[ "$failed" = 0 ]
