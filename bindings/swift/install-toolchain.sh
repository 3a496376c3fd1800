#!/usr/bin/env bash
# Installs a Swift toolchain for Linux (Debian trixie's `swiftlang`, Swift 6.0.x) into a
# fixed directory that later runs reuse: a minimal trixie root made with debootstrap from
# the Debian registry this machine's apt is configured for. About 3.2 GB, a few minutes.
#
# Usage: sudo bash bindings/swift/install-toolchain.sh        (prints the root's path)
#   GATEROUTER_SWIFT_ROOT   where the root lives (default /var/cache/gaterouter/swift-trixie)
#   GATEROUTER_DEBIAN_MIRROR  Debian mirror URL (default: the one in /etc/apt/sources.list*)
#
# A marker file (.gaterouter-swift-ready) is written only once everything succeeded, so a
# half-finished install (interrupted, out of disk) is removed and redone on the next run.
# Runs as root (debootstrap, chroot, mount). Concurrent runs wait for each other (flock).
set -euo pipefail
ROOT="${GATEROUTER_SWIFT_ROOT:-/var/cache/gaterouter/swift-trixie}"
MARKER="$ROOT/.gaterouter-swift-ready"
SUITE=trixie

if [ -f "$MARKER" ]; then echo "$ROOT"; exit 0; fi
if [ "$(id -u)" != 0 ]; then
    echo "install-toolchain.sh: must run as root (debootstrap, chroot, mount); try sudo" >&2
    exit 1
fi
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
if [ -f "$MARKER" ]; then echo "$ROOT"; exit 0; fi   # another run finished meanwhile

mirror="${GATEROUTER_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    # deb822 (URIs: ...) or one-line (deb URL suite ...) sources; first Debian main archive.
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -oE '(https?)://[^ ]+/debian/?( |$)' | grep -v -- '-security' | head -n1 | tr -d ' ' || true)
fi
if [ -z "$mirror" ]; then
    echo "install-toolchain.sh: no Debian mirror found in /etc/apt/sources.list*; set GATEROUTER_DEBIAN_MIRROR" >&2
    exit 1
fi

log() { echo "== swift toolchain: $*" >&2; }
cleanup() {
    mountpoint -q "$ROOT/proc" 2>/dev/null && umount "$ROOT/proc" || true
}
trap cleanup EXIT

if [ -e "$ROOT" ]; then
    log "removing an unfinished install at $ROOT"
    cleanup
    # Never follow into anything still mounted inside (a bind-mounted repo from a killed run).
    if grep -q " $ROOT/" /proc/mounts; then
        echo "install-toolchain.sh: something is still mounted under $ROOT; unmount it first:" >&2
        grep " $ROOT/" /proc/mounts >&2
        exit 1
    fi
    rm -rf --one-file-system "$ROOT"
fi

if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap on the host"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

start=$(date +%s)
log "debootstrap --variant=minbase $SUITE $ROOT $mirror"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$mirror" >"$ROOT.debootstrap.log" 2>&1 || {
    tail -n 30 "$ROOT.debootstrap.log" >&2; exit 1; }
mount -t proc proc "$ROOT/proc"
log "apt-get install swiftlang (inside the root)"
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq swiftlang >/dev/null && apt-get clean'
chroot "$ROOT" /sbin/ldconfig
chroot "$ROOT" /usr/bin/env -i PATH=/usr/libexec/swift/bin:/usr/sbin:/usr/bin:/sbin:/bin swift --version >&2
touch "$MARKER"
log "ready in $(( $(date +%s) - start )) s: $ROOT ($(du -sh --one-file-system "$ROOT" | cut -f1))"
echo "$ROOT"
