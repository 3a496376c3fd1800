#!/usr/bin/env bash
# Builds the fuzz targets with nightly (cargo-fuzz, libFuzzer) and runs each for SECONDS
# (default 60), one process on one core. New inputs go to fuzz/corpus-work/<target>/
# (not committed); crashes to fuzz/artifacts/<target>/. Prints executions per target and
# exits non-zero if any target crashed (after running all of them).
#   bash fuzz/run.sh [SECONDS] [TARGET...]
# Environment: FUZZ_SANITIZER (default none; address for ASan, ~2x slower),
# CARGO_BUILD_JOBS (build parallelism), FUZZ_ARGS (extra libFuzzer flags).
set -uo pipefail
SECS="${1:-60}"
shift || true
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked"; exit 2; }
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^gaterouter-fuzz$'); fi
flags=(--fuzz-dir fuzz --features libfuzzer --sanitizer "${FUZZ_SANITIZER:-none}" --debug-assertions)
cargo +nightly fuzz build "${flags[@]}" || exit 2
mkdir -p fuzz/target/logs
failed=()
printf '%-18s %8s %12s %10s  %s\n' target seconds executions exec/s result
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus-work/$t" "fuzz/artifacts/$t"
    log="fuzz/target/logs/$t.log"
    # shellcheck disable=SC2086
    cargo +nightly fuzz run "${flags[@]}" "$t" "fuzz/corpus-work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then result=ok; else result="CRASH (exit $rc, see $log and fuzz/artifacts/$t/)"; failed+=("$t"); fi
    printf '%-18s %8s %12s %10s  %s\n' "$t" "$SECS" "${runs:-?}" "${speed:-?}" "$result"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]} (reproduce: cargo +nightly fuzz run ${flags[*]} TARGET fuzz/artifacts/TARGET/crash-...)"
    exit 1
fi
