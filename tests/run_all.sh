#!/usr/bin/env bash
# Runs every test of every language. Installs what it needs (it is the README's test
# command and what CI runs). Usage: bash tests/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

echo "== Rust: workspace tests (debug build, one target/)"
cargo test --workspace --all-targets --no-fail-fast --exclude gaterouter-python --exclude gaterouter-node
cargo test --workspace --doc

echo "== Python: build the package from source (pip install ./python) into a venv, then pytest"
VENV="${GATEROUTER_VENV:-$PWD/target/py-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip >/dev/null
"$VENV/bin/pip" install -q "maturin>=1.9.4,<2" pytest pytest-asyncio mypy
# Debug profile: the test build shares target/ with the Rust tests above.
MATURIN_PEP517_ARGS="--profile dev" "$VENV/bin/pip" install -q --force-reinstall --no-deps ./python
cargo build -q -p gaterouter-emulator
"$VENV/bin/pytest" -q python/tests

echo "== Node: npm ci (committed lock), build the addon (debug) with @napi-rs/cli, then node --test"
cargo build -q -p gaterouter-emulator
# Debug build (no --release): the addon shares target/ with the Rust tests above.
(cd node && npm ci --no-audit --no-fund && npx napi build --platform --js native.js --dts native.d.ts && node --test)
