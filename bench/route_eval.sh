#!/usr/bin/env bash
# Router figures for bench/RESULTS.md (## Routing). Deterministic.
#
#   bench/route_eval.sh                 # all sections: default vs length-only (group 5-fold by source,
#                                       # subject_or_row splits), route calibrate at 10%/30%, route simulate
#   bench/route_eval.sh --default       # one section (--default, --calibrate, --simulate)
#   bench/route_eval.sh --production    # the collector's learner on logged traffic (not in the default run)
#   bench/route_eval.sh --reference     # route calibrate vs the issue's plain ridge reference and variants
#   bench/route_eval.sh --write-builtin core/routing/data/router_weights.json
#                                       # refit the builtin weights on the whole dev file
#   bench/route_eval.sh --bench         # ... and the criterion scoring benchmark
#
# Extra arguments go to the example (`--data FILE`, `--seeds N`). The workspace crates are built
# optimized (CARGO_PROFILE_DEV_OPT_LEVEL=3 on the dev profile: the dependencies are reused
# from the debug build; a release build works too but compiles everything again).
# After --write-builtin, regenerate the vectors:
#   UPDATE_ROUTING_VECTORS=1 cargo test -p gaterouter --test routing_vectors
set -euo pipefail
cd "$(dirname "$0")/.."
bench=0
args=()
for a in "$@"; do
  if [[ "$a" == "--bench" ]]; then bench=1; else args+=("$a"); fi
done
CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run -q -p gaterouter --example route_eval -- "${args[@]+"${args[@]}"}"
if [[ $bench == 1 ]]; then
  cargo bench -p gaterouter --bench routing
fi
