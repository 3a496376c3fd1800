#!/usr/bin/env bash
# Installs the Node package as a user would, in fresh temporary npm projects:
#   1. `npm install <checkout>/node`        (compiles the addon at install time)
#   2. `npm install gaterouter-0.1.0.tgz`   (the tarball of `npm pack`, addon inside)
# and in each loads it with `require` (CJS) and `import` (ESM) and makes one call against
# the emulator. The addon is a debug build sharing the workspace target/ (incremental).
# Usage: bash tests/install/node.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export GATEROUTER_NODE_PROFILE="${GATEROUTER_NODE_PROFILE:-dev}"
TMP="$(mktemp -d)"
EMU_PID=""
cleanup() { [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

cargo build -q -p gaterouter-emulator
. "$ROOT/tests/lib/emulator.sh"
start_emulator "$CARGO_TARGET_DIR/debug/gaterouter-emulator" "$TMP/emu.out"
echo "emulator at $EMU"

check_project() { # $1 = project dir
    local dir="$1"
    cat >"$dir/cjs.cjs" <<JS
const { GateRouter, GateRouterError } = require('gaterouter')
const client = new GateRouter({ config: { providers: { openai: { base_url: '$EMU/openai/v1', api_key: 'test' } } } })
client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
  .then(async (r) => {
    if (!r.choices[0].message.content) throw new Error('empty answer')
    if (typeof GateRouterError !== 'function') throw new Error('no GateRouterError')
    console.log('cjs ok:', r.model, r.usage.total_tokens, 'tokens')
    await client.close()
  })
  .catch((e) => { console.error(e); process.exit(1) })
JS
    cat >"$dir/esm.mjs" <<JS
import { GateRouter } from 'gaterouter'
import def from 'gaterouter'
const client = new GateRouter({ config: { providers: { openai: { base_url: '$EMU/openai/v1', api_key: 'test' } } } })
const r = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
if (!r.choices[0].message.content) throw new Error('empty answer')
if (def !== GateRouter) throw new Error('the default export is not GateRouter')
console.log('esm ok:', r.model, r.usage.total_tokens, 'tokens')
await client.close()
JS
    (cd "$dir" && node cjs.cjs && node esm.mjs)
}

echo "== npm install <checkout>/node"
mkdir "$TMP/from-dir" && (cd "$TMP/from-dir" && npm init -y >/dev/null && npm install --no-audit --no-fund "$ROOT/node")
check_project "$TMP/from-dir"

echo "== npm pack, then npm install the tarball"
(cd "$ROOT/node" && npm pack --pack-destination "$TMP" >/dev/null)
TGZ="$(ls "$TMP"/gaterouter-*.tgz)"
tar -tzf "$TGZ" >"$TMP/tgz.list"
grep -q "package/gaterouter\..*\.node" "$TMP/tgz.list" || { echo "the tarball carries no addon"; exit 1; }
mkdir "$TMP/from-tgz" && (cd "$TMP/from-tgz" && npm init -y >/dev/null && npm install --no-audit --no-fund --offline "$TGZ")
[ -L "$TMP/from-tgz/node_modules/gaterouter" ] && { echo "expected a copy, not a link"; exit 1; }
check_project "$TMP/from-tgz"
echo "node install: ok"
