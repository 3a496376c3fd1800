#!/usr/bin/env bash
# Cross-builds the uniffi library for aarch64 Linux (the instruction set of Android
# arm64-v8a and iOS devices) with zig as C compiler and linker, and prints its stripped
# size. No NDK or Xcode needed; zig comes from PyPI (`ziglang`).
#   bash bench/cross_aarch64.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ZIG_VENV:-/tmp/zigvenv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import ziglang' 2>/dev/null || "$VENV/bin/pip" install -q ziglang
ZIG="$("$VENV/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"
rustup target add aarch64-unknown-linux-gnu
WRAP="$(mktemp -d)/zcc"
cat > "$WRAP" <<WRAPPER
#!/bin/sh
# zig cc for aarch64-linux-gnu; drops the --target=... that cc-rs and rustc add.
for a in "\$@"; do shift; case "\$a" in --target=*) ;; *) set -- "\$@" "\$a" ;; esac; done
exec "$ZIG" cc -target aarch64-linux-gnu.2.28 "\$@"
WRAPPER
chmod +x "$WRAP"
CC_aarch64_unknown_linux_gnu="$WRAP" CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$WRAP" \
  cargo build --release -p gaterouter-ffi --target aarch64-unknown-linux-gnu
lib=target/aarch64-unknown-linux-gnu/release/libgaterouter_ffi.so
llvm-strip --strip-all -o "$lib.stripped" "$lib"
echo "$lib: $(stat -c %s "$lib") bytes, stripped $(stat -c %s "$lib.stripped") bytes"
