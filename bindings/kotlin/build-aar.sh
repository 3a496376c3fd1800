#!/usr/bin/env bash
# Builds the Android AAR: libgaterouter_ffi.so for arm64-v8a, armeabi-v7a and x86_64 with
# cargo-ndk, then the library module in bindings/kotlin/android with Gradle.
# NOT run in this repository's CI (no Android SDK/NDK there). Needs: ANDROID_NDK_HOME (NDK
# r26+), ANDROID_HOME (SDK with platform 35), `cargo install cargo-ndk`, Gradle 8.9+ on PATH.
# Usage: bash bindings/kotlin/build-aar.sh   -> bindings/kotlin/android/build/outputs/aar/gaterouter-android-release.aar
set -euo pipefail
cd "$(dirname "$0")/../.."
for v in ANDROID_NDK_HOME ANDROID_HOME; do
    [ -n "${!v:-}" ] || { echo "build-aar.sh: set $v (Android NDK r26+ / SDK)" >&2; exit 1; }
done
command -v cargo-ndk >/dev/null || { echo "build-aar.sh: cargo install cargo-ndk" >&2; exit 1; }
command -v gradle >/dev/null || { echo "build-aar.sh: install Gradle 8.9+ (or add a wrapper)" >&2; exit 1; }
rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
# The committed generated code must match this library (checksums): regenerate first if the
# Rust API changed (bash bindings/generate.sh) and commit the result.
cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 -o bindings/kotlin/android/build/jniLibs \
    build -p gaterouter-ffi --release
gradle -p bindings/kotlin/android assembleRelease
ls -l bindings/kotlin/android/build/outputs/aar/
