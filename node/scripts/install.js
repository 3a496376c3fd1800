#!/usr/bin/env node
'use strict'
// Makes the native addon `native.js` loads (`gaterouter.<platform>.node`) exist.
//
//   node scripts/install.js          npm's `install` step (also run by `prepack`)
//
// 1. A source checkout (this package sits in the GateRouter Cargo workspace, e.g.
//    `npm install ./node` or `npm install /path/to/gaterouter/node`): compile the addon
//    with cargo (`cargo build -p gaterouter-node`, ~2-3 min the first time, seconds when
//    up to date) and copy the cdylib to the name native.js expects.
// 2. No sources (the tarball of `npm pack`, which carries the addon built by `prepack`):
//    the addon is already there; check it loads.
// 3. Running inside node/ itself (`npm ci` there, for development): skip; the developer
//    builds with `npx napi build` (see README.md).
//
// Environment: GATEROUTER_NODE_PROFILE=release|dev (default release), CARGO_TARGET_DIR
// (reuse a target dir: the build is then incremental), GATEROUTER_NODE_SKIP_BUILD=1.

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const pkgDir = path.resolve(__dirname, '..')

function platformTag() {
  const { platform, arch } = process
  if (platform === 'linux') {
    let musl = false
    try {
      musl = !process.report.getReport().header.glibcVersionRuntime
    } catch {
      musl = false
    }
    return `linux-${arch}-${musl ? 'musl' : 'gnu'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

const addonName = `gaterouter.${platformTag()}.node`
const addonPath = path.join(pkgDir, addonName)

// npm runs install scripts with their output hidden (unless --foreground-scripts); say what
// is happening on the terminal itself when there is one, else on stderr.
let tty = null
try {
  tty = fs.openSync(process.platform === 'win32' ? '\\\\.\\CON' : '/dev/tty', 'w')
} catch {
  tty = null
}
function say(msg) {
  const line = `gaterouter: ${msg}\n`
  if (tty !== null) {
    try {
      fs.writeSync(tty, line)
    } catch {
      /* terminal went away */
    }
  }
  process.stderr.write(line)
}

function fail(msg) {
  say(`error: ${msg}`)
  process.exit(1)
}

function isSourceCheckout() {
  return fs.existsSync(path.join(pkgDir, 'Cargo.toml')) && fs.existsSync(path.join(pkgDir, 'src', 'lib.rs'))
}

function checkLoads() {
  try {
    require(addonPath)
    return null
  } catch (e) {
    return e
  }
}

function build() {
  const profile = process.env.GATEROUTER_NODE_PROFILE || 'release'
  if (!['release', 'dev', 'debug'].includes(profile)) {
    fail(`GATEROUTER_NODE_PROFILE=${profile}: expected release or dev`)
  }
  const args = ['build', '-p', 'gaterouter-node', '--lib', '--message-format=json-render-diagnostics']
  if (profile === 'release') args.push('--release')
  say(
    `compiling the Rust addon (cargo ${args.slice(0, 3).join(' ')}${profile === 'release' ? ' --release' : ''}); ` +
      'this takes about 2-3 minutes the first time, seconds when up to date. ' +
      'Add --foreground-scripts to npm to see cargo\'s progress.',
  )
  return new Promise((resolve) => {
    const started = Date.now()
    let child
    try {
      child = spawn(process.env.CARGO || 'cargo', args, { cwd: pkgDir, stdio: ['ignore', 'pipe', 'inherit'] })
    } catch (e) {
      fail(`cannot run cargo (${e.message}): install Rust 1.85+ from https://rustup.rs and retry`)
    }
    child.on('error', (e) =>
      fail(`cannot run cargo (${e.code || e.message}): install Rust 1.85+ from https://rustup.rs and retry`),
    )
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
    })
    const ticker = setInterval(() => say(`still compiling (${Math.round((Date.now() - started) / 1000)} s)...`), 30_000)
    child.on('close', (code) => {
      clearInterval(ticker)
      if (code !== 0) fail(`cargo build failed (exit ${code}); its errors are above (npm: add --foreground-scripts)`)
      let lib = null
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue
        let msg
        try {
          msg = JSON.parse(line)
        } catch {
          continue
        }
        if (msg.reason === 'compiler-artifact' && msg.target && msg.target.name === 'gaterouter_node') {
          lib = msg.filenames.find((f) => /\.(so|dylib|dll)$/.test(f)) || lib
        }
      }
      if (!lib) fail('cargo built no gaterouter_node cdylib (unexpected: report it)')
      fs.copyFileSync(lib, addonPath)
      say(`built ${addonName} in ${Math.round((Date.now() - started) / 1000)} s`)
      resolve()
    })
  })
}

async function main() {
  if (process.env.GATEROUTER_NODE_SKIP_BUILD === '1') {
    say('GATEROUTER_NODE_SKIP_BUILD=1: not building the addon')
    return
  }
  const initCwd = process.env.INIT_CWD ? path.resolve(process.env.INIT_CWD) : null
  if (process.env.npm_lifecycle_event === 'install' && initCwd === pkgDir) {
    // `npm ci` / `npm install` inside node/ (development): the developer's build step is
    // `npx napi build`; building here too would compile twice.
    return
  }
  if (isSourceCheckout()) {
    await build()
  } else if (!fs.existsSync(addonPath)) {
    fail(
      `no prebuilt addon for this platform (${addonName}) in this package and no Rust sources to build it: ` +
        'install from a GateRouter checkout (`npm install /path/to/gaterouter/node`, which compiles it), ' +
        'or pack the package on this platform (`npm pack` in node/ builds it)',
    )
  }
  const err = checkLoads()
  if (err) fail(`${addonName} does not load: ${err.message}`)
}

main().then(
  () => {
    if (tty !== null) fs.closeSync(tty)
  },
  (e) => fail(e && e.stack ? e.stack : String(e)),
)
