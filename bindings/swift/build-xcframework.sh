#!/usr/bin/env bash
# Builds bindings/swift/GateRouterFFI.xcframework (iOS device, iOS simulator, macOS) from
# the gaterouter-ffi static library. macOS with Xcode and rustup only.
# Usage: bash bindings/swift/build-xcframework.sh        (PROFILE=dev for a debug build)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(uname -s)" != Darwin ] || ! command -v xcodebuild >/dev/null; then
    echo "build-xcframework.sh needs macOS with Xcode (xcodebuild, lipo)." >&2
    exit 1
fi
PROFILE="${PROFILE:-release}"
DIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
OUT="$PWD/bindings/swift/GateRouterFFI.xcframework"
WORK="$TARGET_DIR/xcframework"
TARGETS=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)

rustup target add "${TARGETS[@]}"
export IPHONEOS_DEPLOYMENT_TARGET=15.0 MACOSX_DEPLOYMENT_TARGET=12.0
for t in "${TARGETS[@]}"; do
    # The static library only here (not a crate-type of every build).
    cargo rustc -p gaterouter-ffi --lib --profile "$PROFILE" --target "$t" --crate-type staticlib
done

# The committed generated code must match this library (checksums): regenerate first if
# the Rust API changed (bash bindings/generate.sh) and commit the result.
rm -rf "$WORK" "$OUT"
mkdir -p "$WORK/headers" "$WORK/ios-sim" "$WORK/macos"
cp bindings/swift/generated/GateRouterFFI.h "$WORK/headers/"
# Inside an XCFramework the module map must be called module.modulemap.
cp bindings/swift/generated/GateRouterFFI.modulemap "$WORK/headers/module.modulemap"
lib() { echo "$TARGET_DIR/$1/$DIR/libgaterouter_ffi.a"; }
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$WORK/ios-sim/libgaterouter_ffi.a"
lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output "$WORK/macos/libgaterouter_ffi.a"
xcodebuild -create-xcframework \
    -library "$(lib aarch64-apple-ios)" -headers "$WORK/headers" \
    -library "$WORK/ios-sim/libgaterouter_ffi.a" -headers "$WORK/headers" \
    -library "$WORK/macos/libgaterouter_ffi.a" -headers "$WORK/headers" \
    -output "$OUT"
echo "built $OUT"
