#!/usr/bin/env bash
# Router calibration/evaluation figures for bench/RESULTS.md (## Routing).
#
#   bench/route_eval.sh                 # held-out figures (8 subject splits + leave-one-family-out,
#                                       # with subject-oracle / oracle ceilings; 3 row splits for contrast)
#   bench/route_eval.sh --lexical 14    # ... with hashed word n-gram weights (2^14 buckets) on top
#   bench/route_eval.sh --write-weights core/data/router_weights.json
#                                       # ... then refit the builtin weights on the whole dev file
#   bench/route_eval.sh --bench         # ... and the criterion scoring benchmark
#
# Extra arguments are passed to the example (`--l2`, `--target`, `--balance`,
# `--no-source-intercepts`, `--freeze f1,f2`, `--lexical BITS`, `--lexical-l2 X`, `--diag`, `--data FILE`).
# After --write-weights, regenerate the vectors:
#   UPDATE_ROUTING_VECTORS=1 cargo test -p gaterouter --test routing_vectors
set -euo pipefail
cd "$(dirname "$0")/.."
bench=0
args=()
for a in "$@"; do
  if [[ "$a" == "--bench" ]]; then bench=1; else args+=("$a"); fi
done
cargo run -q -p gaterouter --release --example route_eval -- "${args[@]+"${args[@]}"}"
if [[ $bench == 1 ]]; then
  cargo bench -p gaterouter --bench routing
fi
