#!/usr/bin/env bash
# Token-counting benchmark: builds the release examples once, reports the binary size the
# embedded encodings add, then compares with Python tiktoken on bench/corpus.txt.
#
#   python3 -m venv /tmp/tkvenv && /tmp/tkvenv/bin/pip install tiktoken litellm
#   bash bench/run_tokens_bench.sh            # add --criterion to also run the criterion bench
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/tmp/tkvenv/bin/python}

cargo build --release -q -p gaterouter --example token_count --example size_probe --example size_probe_no_tokens
ex=target/release/examples
with=$(stat -c %s "$ex/size_probe")
without=$(stat -c %s "$ex/size_probe_no_tokens")
echo "binary size: with token counting $with bytes, without $without bytes, added $((with - without)) bytes"
echo

"$PY" bench/tokens_vs_tiktoken.py --rust-bin "$ex/token_count"

if [[ "${1:-}" == "--criterion" ]]; then
  cargo bench -p gaterouter --bench tokens
fi
