// Test support: start the provider emulator (built by `cargo build -p gaterouter-emulator`)
// and build client configs pointing at it, as python/tests/conftest.py does.
// (Not under test/: `node --test` would run every .mjs file there as a test file.)
import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

function emulatorBin() {
  if (process.env.GATEROUTER_EMULATOR_BIN) return process.env.GATEROUTER_EMULATOR_BIN
  const target = path.resolve(ROOT, process.env.CARGO_TARGET_DIR ?? 'target')
  const bin = path.join(target, 'debug', process.platform === 'win32' ? 'gaterouter-emulator.exe' : 'gaterouter-emulator')
  if (!existsSync(bin)) execFileSync('cargo', ['build', '-q', '-p', 'gaterouter-emulator'], { cwd: ROOT, stdio: 'inherit' })
  return bin
}

export const MODELS = ['openai/gpt-4o-mini', 'anthropic/claude-sonnet-4-5', 'gemini/gemini-2.5-flash', 'deepseek/deepseek-chat']

export class Emulator {
  static async start() {
    const proc = spawn(emulatorBin(), ['--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'ignore'] })
    const lines = createInterface({ input: proc.stdout })
    const line = await new Promise((resolve, reject) => {
      lines.once('line', resolve)
      proc.once('error', reject)
      proc.once('exit', (code) => reject(new Error(`emulator exited with ${code} before its banner`)))
    })
    if (!line.startsWith('listening on ')) throw new Error(`unexpected emulator banner: ${line}`)
    // Keep draining stdout so the emulator never blocks on a full pipe.
    lines.on('line', () => {})
    return new Emulator(proc, line.split(' ')[2])
  }

  constructor(proc, baseUrl) {
    this.proc = proc
    this.baseUrl = baseUrl
  }

  /** A client config whose providers all point at the emulator; `overrides` replace top-level keys. */
  config(overrides = {}) {
    const providers = {}
    for (const [name, kind, suffix] of [
      ['openai', 'openai', '/openai/v1'],
      ['anthropic', 'anthropic', '/anthropic'],
      ['gemini', 'gemini', '/gemini/v1beta'],
      ['deepseek', 'openai', '/deepseek/v1'],
    ]) {
      providers[name] = { kind, base_url: this.baseUrl + suffix, api_key: 'emulator-key' }
    }
    return { providers, retry: { initial_backoff_ms: 10, max_backoff_ms: 50 }, ...overrides }
  }

  /** Queue a fault: `{fault, provider, times, ...params}` (see emulator/src/lib.rs). */
  fault(spec) {
    return this.post('/_emulator/faults', spec)
  }

  reset() {
    return this.post('/_emulator/reset', {})
  }

  stats() {
    return this.request('GET', '/_emulator/stats')
  }

  post(urlPath, body) {
    return this.request('POST', urlPath, body)
  }

  request(method, urlPath, body) {
    const data = body === undefined ? undefined : JSON.stringify(body)
    return new Promise((resolve, reject) => {
      const req = http.request(
        this.baseUrl + urlPath,
        { method, agent: false, headers: data ? { 'content-type': 'application/json' } : {} },
        (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (d) => (text += d))
          res.on('end', () => {
            if (res.statusCode >= 300) reject(new Error(`${method} ${urlPath}: HTTP ${res.statusCode} ${text}`))
            else resolve(text ? JSON.parse(text) : null)
          })
        },
      )
      req.on('error', reject)
      req.end(data)
    })
  }

  async stop() {
    if (this.proc.exitCode !== null) return
    const exited = new Promise((resolve) => this.proc.once('exit', resolve))
    this.proc.kill('SIGTERM')
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }
}
