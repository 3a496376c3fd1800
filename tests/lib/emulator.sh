# Sourced by the test scripts (tests/install/*.sh, tests/examples/run.sh, examples/run.sh):
# start the provider emulator on a free loopback port.
#   start_emulator BINARY LOGFILE
# sets EMU (its base URL, http://127.0.0.1:PORT) and EMU_PID (the caller stops it);
# fails, showing the log, when it does not start within 10 s.
start_emulator() {
    local bin="$1" log="$2" url=""
    "$bin" --listen 127.0.0.1:0 >"$log" 2>&1 &
    EMU_PID=$!
    for _ in $(seq 100); do
        url="$(sed -n 's/^listening on //p' "$log" 2>/dev/null | head -n1 | tr -d '[:space:]')"
        [ -n "$url" ] && break
        sleep 0.1
    done
    [ -n "$url" ] || { echo "the emulator did not start:"; cat "$log"; kill "$EMU_PID" 2>/dev/null; return 1; }
    EMU="$url"
}
