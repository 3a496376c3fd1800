#!/usr/bin/env bash
# Builds and runs both mobile example apps (examples/swift, examples/kotlin) against the
# provider emulator and a real collector (SQLite), both started here on 127.0.0.1 and stopped
# on exit. Each app makes its signing key in its secure store (keygen), the script registers
# the public key with the collector as an admin would, then the app runs: chat, stream,
# offline, back, flush. Checks the collector stored the app's 3 calls.
# Swift runs inside the toolchain root on Linux (bindings/swift/in-root.sh, installed if
# absent); Kotlin via Maven (Maven Central, cached in ~/.m2).
# Usage: bash examples/run.sh [swift|kotlin ...]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
APPS=("$@"); [ ${#APPS[@]} -gt 0 ] || APPS=(swift kotlin)
TARGET_DIR="$(mkdir -p "${CARGO_TARGET_DIR:-$PWD/target}" && cd "${CARGO_TARGET_DIR:-$PWD/target}" && pwd)"
TARGET="$TARGET_DIR/debug"
cargo build -q -p gaterouter-ffi -p gaterouter-emulator
cargo build -q -p gaterouter-collector --bin gaterouter-collector

# Under the target dir: visible at the same path inside the Swift root too.
WORK="$(mktemp -d "$TARGET_DIR/examples-run.XXXXXX")"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

. tests/lib/emulator.sh
start_emulator "$TARGET/gaterouter-emulator" "$WORK/emulator.out"
pids+=("$EMU_PID")
EMULATOR="$EMU"

ADMIN="examples-admin-token"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
COLLECTOR="http://127.0.0.1:$PORT"
GATEROUTER_COLLECTOR_ADMIN_TOKEN="$ADMIN" "$TARGET/gaterouter-collector" \
    --listen "127.0.0.1:$PORT" --db "sqlite://$WORK/collector.db" >"$WORK/collector.log" 2>&1 &
pids+=($!)
admin() { curl -fsS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' "$@"; }
for _ in $(seq 200); do admin "$COLLECTOR/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
admin "$COLLECTOR/healthz" >/dev/null || { echo "the collector did not start:"; cat "$WORK/collector.log"; exit 1; }
admin -X POST "$COLLECTOR/v1/admin/orgs" -d '{"id":"acme","name":"Acme"}' >/dev/null
echo "emulator $EMULATOR, collector $COLLECTOR"

calls() { # calls KEY_ID: calls the collector stored for that key
    admin "$COLLECTOR/v1/analytics/summary?key=$1" | python3 -c 'import json,sys; print(sum(r["calls"] for r in json.load(sys.stdin)["rows"]))'
}

# example NAME KEYGEN... -- RUN...: keygen, register the public key, run, check the collector.
example() {
    local name="$1"; shift
    local keygen=() run=()
    while [ "$1" != -- ]; do keygen+=("$1"); shift; done; shift
    run=("$@")
    local key_id="k_example_$name"
    export GATEROUTER_EMULATOR_URL="$EMULATOR" GATEROUTER_COLLECTOR_URL="$COLLECTOR" GATEROUTER_API_KEY_ID="$key_id" \
        GATEROUTER_EXAMPLE_STORE="$WORK/$name/secure-store" GATEROUTER_EXAMPLE_DATA="$WORK/$name/data"
    local public_key
    public_key="$("${keygen[@]}" | tail -n1)"
    admin -X POST "$COLLECTOR/v1/admin/keys" -d "{\"id\":\"$key_id\",\"org_id\":\"acme\",\"public_key\":\"$public_key\"}" >/dev/null
    "${run[@]}" | tee "$WORK/$name.out"
    grep -q '^flush: drained=true pending=0 delivered=[0-9]* refused=0' "$WORK/$name.out" || { echo "$name example: not drained, or records refused"; exit 1; }
    local stored; stored="$(calls "$key_id")"
    [ "$stored" = 3 ] || { echo "$name example: the collector stored $stored calls, expected 3"; exit 1; }
    echo "$name example: OK (the collector stored its 3 signed records)"
}

for app in "${APPS[@]}"; do
    case "$app" in
    swift)
        echo "== examples/swift (SwiftPM command-line app)"
        link=()
        [ "$(uname -s)" = Darwin ] || link=(-Xlinker -L"$TARGET" -Xlinker -rpath -Xlinker "$TARGET")
        bash bindings/swift/in-root.sh examples/swift/GateRouterExample swift build "${link[@]}"
        bin=(bash bindings/swift/in-root.sh examples/swift/GateRouterExample .build/debug/gaterouter-example)
        example swift "${bin[@]}" keygen -- "${bin[@]}" run
        ;;
    kotlin)
        echo "== examples/kotlin (Kotlin/JVM app, Maven)"
        command -v mvn >/dev/null || { apt-get update -qq && apt-get install -y -qq maven default-jdk-headless; }
        mvn -B -q --no-transfer-progress -Dstyle.color=never -f examples/kotlin/pom.xml package \
            dependency:build-classpath -Dmdep.outputFile="$WORK/kotlin.classpath"
        java_cmd=(java -Djna.library.path="$TARGET" -cp "examples/kotlin/target/classes:$(cat "$WORK/kotlin.classpath")"
                  dev.gaterouter.example.AppKt)
        example kotlin "${java_cmd[@]}" keygen -- "${java_cmd[@]}" run
        ;;
    *) echo "unknown example: $app (swift or kotlin)"; exit 2 ;;
    esac
done
