// Test support: a real usage collector (target/debug/gaterouter-collector, built by
// `cargo build -p gaterouter-collector`) on a temporary SQLite file, an org and an API key
// registered through its admin API, and a signing key file for the client.
// (Not under test/: `node --test` would run every .mjs file there as a test file.)
import { execFileSync, spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'

import { ROOT } from './emulator.mjs'

export const ADMIN_TOKEN = 'node-test-admin-token-0123456789'

function collectorBin() {
  if (process.env.GATEROUTER_COLLECTOR_BIN) return process.env.GATEROUTER_COLLECTOR_BIN
  const target = path.resolve(ROOT, process.env.CARGO_TARGET_DIR ?? 'target')
  const bin = path.join(target, 'debug', process.platform === 'win32' ? 'gaterouter-collector.exe' : 'gaterouter-collector')
  if (!existsSync(bin)) execFileSync('cargo', ['build', '-q', '-p', 'gaterouter-collector'], { cwd: ROOT, stdio: 'inherit' })
  return bin
}

export class Collector {
  /** Start a collector on a fresh SQLite database; resolves once it listens. */
  static async start() {
    const dir = mkdtempSync(path.join(tmpdir(), 'gr-node-collector-'))
    const proc = spawn(
      collectorBin(),
      ['--listen', '127.0.0.1:0', '--db', `sqlite://${path.join(dir, 'collector.db')}`, '--log-format', 'json'],
      { env: { ...process.env, GATEROUTER_COLLECTOR_ADMIN_TOKEN: ADMIN_TOKEN, RUST_LOG: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] },
    )
    // The bound address is only in the "collector listening" log line (stderr, JSON).
    const lines = createInterface({ input: proc.stderr })
    const log = []
    const addr = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`collector did not start within 20 s:\n${log.join('\n')}`)), 20_000)
      lines.on('line', (line) => {
        log.push(line)
        let entry
        try {
          entry = JSON.parse(line)
        } catch {
          return
        }
        if (entry.fields?.message === 'collector listening') {
          clearTimeout(timer)
          resolve(entry.fields.addr)
        }
      })
      proc.once('error', reject)
      proc.once('exit', (code) => reject(new Error(`collector exited with ${code}:\n${log.join('\n')}`)))
    })
    return new Collector(proc, `http://${addr}`, dir, log)
  }

  constructor(proc, url, dir, log) {
    this.proc = proc
    this.url = url
    this.dir = dir
    this.log = log
  }

  async request(method, urlPath, body) {
    const res = await fetch(this.url + urlPath, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${urlPath}: HTTP ${res.status} ${text}`)
    return text ? JSON.parse(text) : null
  }

  /**
   * Register org `org` and a fresh Ed25519 API key `keyId` for it; write the private key
   * (PKCS#8 PEM) to a file. Returns the client's `identity` and `reporting` config.
   */
  async registerKey(org, keyId) {
    await this.request('POST', '/v1/admin/orgs', { id: org, name: org }).catch((e) => {
      if (!/409|exists/.test(e.message)) throw e
    })
    const { publicKey, privateKey } = generateKeyPairSync('ed25519')
    // The collector wants the raw 32-byte public key in standard base64.
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url').toString('base64')
    await this.request('POST', '/v1/admin/keys', { id: keyId, org_id: org, public_key: raw })
    const keyFile = path.join(this.dir, `${keyId}.pem`)
    writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 })
    return {
      identity: { org, api_key_id: keyId },
      reporting: {
        collector_url: this.url,
        spool_dir: path.join(this.dir, `spool-${keyId}`),
        signing_key_file: keyFile,
        batch_max_age_ms: 50,
        retry_initial_backoff_ms: 50,
        retry_max_backoff_ms: 500,
      },
    }
  }

  /** Analytics summary row as an object (`calls`, `errors`, `prompt_tokens`, ...), optionally filtered. */
  async summary(query = '') {
    return (await this.request('GET', `/v1/analytics/summary${query}`)).rows[0]
  }

  /** Calls per status (`ok`, `cancelled`, `RATE_LIMITED`, ...) for one key. */
  async byStatus(keyId) {
    const t = await this.request('GET', `/v1/analytics/breakdown?by=status&key=${encodeURIComponent(keyId)}`)
    return Object.fromEntries(t.rows.map((r) => [r.group, r.calls]))
  }

  /** The `collector_records_*_total` counters from /metrics. */
  async counters() {
    const res = await fetch(`${this.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    const out = {}
    for (const line of (await res.text()).split('\n')) {
      const m = /^(collector_records_\w+_total)(\{[^}]*\})?\s+(\d+)/.exec(line)
      if (m) out[m[1] + (m[2] ?? '')] = Number(m[3])
    }
    return out
  }

  async stop() {
    if (this.proc.exitCode === null) {
      const exited = new Promise((resolve) => this.proc.once('exit', resolve))
      this.proc.kill('SIGTERM')
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
    rmSync(this.dir, { recursive: true, force: true })
  }
}
