#!/usr/bin/env bash
# Token-counting benchmark: builds the release examples once, reports the binary size the
# embedded encodings add (ours and the two peers), then compares throughput and first-count
# latency with Python tiktoken on bench/corpus.txt, all in the same run.
#
#   python3 -m venv /tmp/tkvenv && /tmp/tkvenv/bin/pip install tiktoken==0.14.0
#   bash bench/run_tokens_bench.sh            # add --criterion to also run the criterion bench
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/tmp/tkvenv/bin/python}

cargo build --release -q -p gaterouter --features bench-peers --example token_count \
  --example size_probe --example size_probe_no_tokens --example size_probe_tiktoken_rs \
  --example size_probe_bpe_openai
ex=target/release/examples
stripped() { strip --strip-all -o "$1.stripped" "$1" && stat -c %s "$1.stripped"; }
without=$(stripped "$ex/size_probe_no_tokens")
echo "release binaries, stripped (strip --strip-all):"
printf '  %-24s %12s bytes\n' "without token counting" "$without"
for probe in size_probe size_probe_tiktoken_rs size_probe_bpe_openai; do
  with=$(stripped "$ex/$probe")
  printf '  %-24s %12s bytes  (+%s for o200k + cl100k)\n' "$probe" "$with" "$((with - without))"
done
echo

"$PY" bench/tokens_vs_tiktoken.py --rust-bin "$ex/token_count"

if [[ "${1:-}" == "--criterion" ]]; then
  cargo bench -p gaterouter --features bench-peers --bench tokens
fi
