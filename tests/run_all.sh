#!/usr/bin/env bash
# Runs every test of every language. Installs what it needs (it is the README's test
# command and what CI runs). Usage: bash tests/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# Each stage says when it starts (minutes since the command began): CI time is watched.
SECONDS=0
stage() { printf '== %s (at %dm%02ds)\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }

stage "Rust: formatting (rustfmt), lints (clippy -D warnings), then workspace tests (debug build, one target/), then the core crates' docs (-D warnings)"
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all --check
else
  echo "rustfmt is not installed (rustup component add rustfmt): formatting not checked" >&2
fi
# Lints as errors (the workspace's [lints] plus clippy.toml), on the same check build the
# tests reuse.
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets -- -D warnings
else
  echo "clippy is not installed (rustup component add clippy): lints not checked" >&2
fi
cargo test --workspace --all-targets --no-fail-fast --exclude gaterouter-python --exclude gaterouter-node
cargo test --workspace --doc
# The core crates' API docs (each lib.rs is the map of its crate) build without a broken
# link or a warning.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p gaterouter -p gaterouter-types \
  -p gaterouter-tokens -p gaterouter-pricing -p gaterouter-providers -p gaterouter-accounts \
  -p gaterouter-health -p gaterouter-routing -p gaterouter-usage -p gaterouter-tokenizer
# Every committed fuzz input (corpus + crash regressions) through the fuzz targets' code,
# on stable without libFuzzer (fuzz/README.md runs the fuzzers themselves).
bash fuzz/replay.sh

stage "Python: build the package from source (pip install ./python) into a venv, then pytest"
VENV="${GATEROUTER_VENV:-$PWD/target/py-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip >/dev/null
"$VENV/bin/pip" install -q "maturin>=1.9.4,<2" pytest pytest-asyncio mypy
# Debug profile: the test build shares target/ with the Rust tests above.
MATURIN_PEP517_ARGS="--profile dev" "$VENV/bin/pip" install -q --force-reinstall --no-deps ./python
cargo build -q -p gaterouter-emulator
"$VENV/bin/pytest" -q python/tests

stage "Node: npm ci (committed lock), build the addon (debug) with @napi-rs/cli, then node --test"
cargo build -q -p gaterouter-emulator
# Debug build (no --release): the addon shares target/ with the Rust tests above.
(cd node && npm ci --no-audit --no-fund && npx napi build --platform --js native.js --dts native.d.ts && node --test)

stage "Examples: examples/python and examples/node (JS run, TS type-checked) against the emulator"
bash tests/examples/run.sh

stage "Install as a user would: npm install ./node and the packed tarball; pip install ./python and the wheel (fresh projects/venvs)"
bash tests/install/node.sh
bash tests/install/python.sh

stage "Kotlin/Swift (uniffi): the committed generated code matches the Rust API"
command -v mvn >/dev/null && command -v javac >/dev/null || { apt-get update -qq && apt-get install -y -qq maven default-jdk-headless; }
GEN_TMP="$(mktemp -d)"
bash bindings/generate.sh "$GEN_TMP"
for lang in kotlin swift; do
    diff -r "$GEN_TMP/$lang/generated" "bindings/$lang/generated" \
        || { echo "bindings/$lang/generated is stale: run 'bash bindings/generate.sh' and commit it"; exit 1; }
done
rm -rf "$GEN_TMP"

stage "Kotlin: JUnit suite on the JVM against the cdylib and the emulator (Maven caches in ~/.m2)"
bash bindings/kotlin/run-tests.sh

stage "Swift: XCTest suite with swift test (Linux: Swift 6 in a Debian trixie root, installed once), then the mobile example apps"
bash bindings/swift/run-tests.sh
bash examples/run.sh

stage "Collector: PostgreSQL + headless Chromium (installs what is missing when root)"
# The workspace run above skips these when PostgreSQL, Chromium or the npm package are
# absent; here they are installed and required. PostgreSQL is started by the tests
# themselves (as the postgres user, loopback port, temp dir) and stopped afterwards.
need=()
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "missing ${need[*]}: install them (apt-get install ${need[*]}) to run the collector's PostgreSQL/browser tests"; exit 1
    fi
fi
(cd collector/dashboard-test && npm ci --no-audit --no-fund --silent)
GATEROUTER_TEST_REQUIRE_POSTGRES=1 GATEROUTER_TEST_REQUIRE_BROWSER=1 \
    cargo test -p gaterouter-collector --test collector --test dashboard --test rollups

stage "Docs: every README block run (emulator + collector), first-hour tests (Rust, Python, Node; Kotlin's ran above)"
python3 tests/readme/check.py
python3 tests/first-hour/first_hour.py
stage "Done: every test passed"
