#!/usr/bin/env bash
# Runs a command with the Swift toolchain, from directory DIR of this repository.
#   bash bindings/swift/in-root.sh DIR COMMAND [ARGS...]
# macOS, or Linux with `swift` already on PATH: runs it directly.
# Other Linux machines: inside the Debian trixie root made by install-toolchain.sh (installed
# first if absent). The repository (and the cargo target dir, when outside it) is bind-mounted
# into the root at the same path, so paths match on both sides; /proc and /dev are mounted;
# everything is unmounted on exit. The root shares the host's network namespace, so servers
# on 127.0.0.1 are reachable from both sides. Needs root for mount/chroot.
# Variables passed inside: GATEROUTER_TARGET_DIR, CI, and GATEROUTER_* given by the caller.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="$(cd "$1" && pwd)"; shift
TARGET_DIR="$(mkdir -p "${CARGO_TARGET_DIR:-$REPO/target}" && cd "${CARGO_TARGET_DIR:-$REPO/target}" && pwd)"
export GATEROUTER_TARGET_DIR="${GATEROUTER_TARGET_DIR:-$TARGET_DIR/debug}"

if [ "$(uname -s)" = Darwin ] || { [ -z "${GATEROUTER_SWIFT_ROOT:-}" ] && command -v swift >/dev/null; }; then
    cd "$DIR" && exec "$@"
fi

ROOT="$(bash "$HERE/install-toolchain.sh")"
# One run at a time per root: the mounts below are shared state.
exec 8>"$ROOT.run.lock"
flock 8
mounted=()
cleanup() {
    local i p
    # Whatever the command left running inside the root (servers a crashed test started):
    # runs are serialized by the lock, so every process rooted there is this run's.
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && kill -KILL "${p#/proc/}" 2>/dev/null || true
    done
    for (( i=${#mounted[@]}-1; i>=0; i-- )); do
        umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bind() { # bind SRC: SRC at the same path inside the root
    mkdir -p "$ROOT$1"
    mount --bind "$1" "$ROOT$1"; mounted+=("$ROOT$1")
}
mount -t proc proc "$ROOT/proc"; mounted+=("$ROOT/proc")
mount --bind /dev "$ROOT/dev"; mounted+=("$ROOT/dev")
bind "$REPO"
case "$TARGET_DIR/" in "$REPO"/*) ;; *) bind "$TARGET_DIR" ;; esac
# Inside: a clean environment, the toolchain first on PATH.
envs=(HOME=/root LANG=C.UTF-8 TMPDIR=/tmp PATH=/usr/libexec/swift/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
      "CI=${CI:-}")
while IFS='=' read -r k v; do envs+=("$k=$v"); done < <(env | grep -E '^GATEROUTER_[A-Z_]*=' || true)
q=$(printf '%q ' "$@")
chroot "$ROOT" /usr/bin/env -i "${envs[@]}" /bin/bash -c "cd $(printf '%q' "$DIR") && $q"
