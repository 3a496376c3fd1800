#!/usr/bin/env bash
# Installs the Python package as a user would, each into a fresh virtual environment:
#   1. `pip install ./python`                        (compiles the Rust core)
#   2. `pip wheel ./python`, then `pip install --no-index <wheel>` (offline, no compiler)
# and in each imports it and makes one call against the emulator. Debug profile, sharing
# the workspace target/ so the build is incremental. Usage: bash tests/install/python.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}"
TMP="$(mktemp -d)"
EMU_PID=""
cleanup() { [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

cargo build -q -p gaterouter-emulator
. "$ROOT/tests/lib/emulator.sh"
start_emulator "$CARGO_TARGET_DIR/debug/gaterouter-emulator" "$TMP/emu.out"
echo "emulator at $EMU"

cat >"$TMP/check.py" <<PY
import gaterouter
base = "$EMU"
client = gaterouter.Client({"providers": {
    "openai": {"base_url": base + "/openai/v1", "api_key": "emulator-key"},
    "anthropic": {"base_url": base + "/anthropic", "api_key": "emulator-key"},
}})
r = client.chat.completions.create(model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
assert r.choices[0].message.content, r
assert r.cost.total_micros >= 0
print("python ok:", gaterouter.__file__.split("site-packages")[-1], r.model, r.usage.total_tokens, "tokens")
PY

echo "== pip install ./python (fresh venv)"
python3 -m venv "$TMP/venv-src"
"$TMP/venv-src/bin/pip" install -q "$ROOT/python"
(cd "$TMP" && "$TMP/venv-src/bin/python" check.py)

echo "== pip wheel ./python, then pip install --no-index the wheel (fresh venv, offline)"
"$TMP/venv-src/bin/pip" wheel -q --no-deps "$ROOT/python" -w "$TMP/dist"
python3 -m venv "$TMP/venv-whl"
"$TMP/venv-whl/bin/pip" install -q --no-index "$TMP"/dist/gaterouter-*.whl
(cd "$TMP" && "$TMP/venv-whl/bin/python" check.py)
echo "python install: ok"
