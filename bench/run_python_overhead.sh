#!/usr/bin/env bash
# Python SDK overhead: gaterouter vs the official openai SDK vs litellm, against the
# provider emulator, plus import times. Creates its own venv under target/, installs
# openai, litellm and httpx from PyPI and the local package (release build unless
# GATEROUTER_PY_PROFILE=dev), builds the emulator, runs bench/python_overhead.py.
#
#   bash bench/run_python_overhead.sh                 # 2000 calls per contender
#   CALLS=500 GATEROUTER_PY_PROFILE=dev bash bench/run_python_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GATEROUTER_BENCH_VENV:-$PWD/target/bench-py-venv}
PROFILE=${GATEROUTER_PY_PROFILE:-release}
CALLS=${CALLS:-2000}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "maturin>=1.9.4,<2" openai litellm httpx
if [ "$PROFILE" = dev ]; then
  MATURIN_PEP517_ARGS="--profile dev" "$VENV/bin/pip" install -q --force-reinstall --no-deps ./python
else
  "$VENV/bin/pip" install -q --force-reinstall --no-deps ./python   # maturin builds release by default
fi
cargo build -q -p gaterouter-emulator
"$VENV/bin/pip" list 2>/dev/null | grep -iE '^(gaterouter|openai|litellm|httpx) ' | tr -s ' ' | sed 's/^/# /'
echo "# gaterouter build profile: $PROFILE"
mkdir -p target/bench
"$VENV/bin/python" bench/python_overhead.py --emulator target/debug/gaterouter-emulator --calls "$CALLS" \
  --json target/bench/python_overhead.json "$@"
