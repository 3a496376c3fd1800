// Per-call overhead of the gaterouter Node package next to the official `openai` SDK,
// both calling the same provider emulator (OpenAI wire format) sequentially.
//
//   node bench/node_overhead.mjs [N]        (bench/run_node_overhead.sh builds and installs first)
//
// For each mode (a plain chat call, and a stream read to its end) and each client, N
// sequential calls are made in interleaved rounds (the client order rotates every round,
// so drift in machine load hits every client alike) after a warm-up. Reported per call:
// wall-clock median / p90 / p99 / mean, and the whole process's CPU time (JS thread +
// native threads; the emulator is another process). `raw fetch` is a hand-written call
// with Node's built-in fetch (undici) and JSON.parse, no SDK: the reference point for
// JavaScript clients (the openai SDK is built on the same fetch; gaterouter's HTTP runs
// in Rust, so it can be below it).
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const requireNode = createRequire(path.join(HERE, '..', 'node', 'index.js'))
const requireDeps = createRequire(path.join(HERE, 'node_overhead_deps', 'package.json'))
const { GateRouter, coreVersion } = requireNode('./index.js')
const OpenAIModule = requireDeps('openai')
const OpenAI = OpenAIModule.OpenAI ?? OpenAIModule.default ?? OpenAIModule
const openaiVersion = JSON.parse(readFileSync(path.join(HERE, 'node_overhead_deps', 'node_modules', 'openai', 'package.json'), 'utf8')).version
const { Emulator } = await import(path.join(HERE, '..', 'node', 'testing', 'emulator.mjs'))

const N = Number(process.argv[2] ?? 2000)
const ROUNDS = 10
const WARMUP = 200
const MESSAGES = [
  { role: 'system', content: 'You are a concise assistant.' },
  { role: 'user', content: 'Summarize why the sky is blue in two sentences.' },
]

const emu = await Emulator.start()
const base = `${emu.baseUrl}/openai/v1`

const openai = new OpenAI({ baseURL: base, apiKey: 'emulator-key', maxRetries: 0 })
const gr = new GateRouter({
  config: {
    builtin_providers: false,
    providers: { openai: { kind: 'openai', base_url: base, api_key: 'emulator-key' } },
    retry: { max_retries: 0 },
    reporting: { mode: 'off' },
  },
})

async function fetchChat(stream) {
  const res = await fetch(`${base}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer emulator-key' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}) }),
  })
  if (!res.ok) throw new Error(`HTTP ${res.status}`)
  if (!stream) return JSON.parse(await res.text()).usage.total_tokens
  // Parse the SSE events as a client must (data lines -> JSON), keep the usage.
  let usage = null
  let buf = ''
  const dec = new TextDecoder()
  for await (const bytes of res.body) {
    buf += dec.decode(bytes, { stream: true })
    let i
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, i)
      buf = buf.slice(i + 2)
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ') || line === 'data: [DONE]') continue
        const chunk = JSON.parse(line.slice(6))
        if (chunk.usage) usage = chunk.usage
      }
    }
  }
  return usage.total_tokens
}

async function openaiChat(stream) {
  if (!stream) return (await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES })).usage.total_tokens
  const s = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true, stream_options: { include_usage: true } })
  let usage = null
  for await (const chunk of s) if (chunk.usage) usage = chunk.usage
  return usage.total_tokens
}

async function gaterouterChat(stream) {
  if (!stream) return (await gr.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: MESSAGES })).usage.total_tokens
  const s = await gr.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: MESSAGES, stream: true })
  for await (const _ of s);
  return s.usage.total_tokens
}

const CLIENTS = [
  ['raw fetch (no SDK)', fetchChat],
  [`openai SDK ${openaiVersion}`, openaiChat],
  [`gaterouter (core ${coreVersion()})`, gaterouterChat],
]

function quantile(sorted, q) {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i]
}

async function measure(stream) {
  const lat = CLIENTS.map(() => [])
  const cpu = CLIENTS.map(() => 0)
  // Sanity: every client sees the same usage from the emulator.
  const tokens = []
  for (const [, fn] of CLIENTS) {
    tokens.push(await fn(stream))
    for (let i = 0; i < WARMUP; i++) await fn(stream)
  }
  if (new Set(tokens).size !== 1) throw new Error(`clients disagree on usage: ${tokens}`)
  const perRound = Math.ceil(N / ROUNDS)
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < CLIENTS.length; k++) {
      const c = (k + r) % CLIENTS.length
      const fn = CLIENTS[c][1]
      const cpu0 = process.cpuUsage()
      for (let i = 0; i < perRound; i++) {
        const t0 = process.hrtime.bigint()
        await fn(stream)
        lat[c].push(Number(process.hrtime.bigint() - t0) / 1e3)
      }
      const d = process.cpuUsage(cpu0)
      cpu[c] += d.user + d.system
    }
  }
  return CLIENTS.map(([name], c) => {
    const s = lat[c].slice().sort((a, b) => a - b)
    return {
      client: name,
      calls: s.length,
      median_us: quantile(s, 0.5),
      p90_us: quantile(s, 0.9),
      p99_us: quantile(s, 0.99),
      mean_us: s.reduce((a, b) => a + b, 0) / s.length,
      cpu_us_per_call: cpu[c] / s.length,
    }
  })
}

const f = (x) => x.toFixed(0)
const results = {}
console.log(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model}), load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`)
console.log(`N=${N} sequential calls per client and mode, ${ROUNDS} interleaved rounds, ${WARMUP} warm-up calls each\n`)
for (const [mode, stream] of [['chat', false], ['stream', true]]) {
  const rows = await measure(stream)
  results[mode] = rows
  console.log(`### ${mode === 'chat' ? 'chat.completions.create (non-streaming)' : 'stream: create + read every chunk'}\n`)
  console.log('| client | median us | p90 us | p99 us | mean us | process CPU us/call |')
  console.log('|---|---|---|---|---|---|')
  for (const r of rows) console.log(`| ${r.client} | ${f(r.median_us)} | ${f(r.p90_us)} | ${f(r.p99_us)} | ${f(r.mean_us)} | ${f(r.cpu_us_per_call)} |`)
  const [floor, oa, g] = rows
  console.log(
    `\ngaterouter / openai: median ${(g.median_us / oa.median_us).toFixed(2)}x, p99 ${(g.p99_us / oa.p99_us).toFixed(2)}x, CPU ${(g.cpu_us_per_call / oa.cpu_us_per_call).toFixed(2)}x; ` +
      `median minus raw fetch: openai ${f(oa.median_us - floor.median_us)} us, gaterouter ${f(g.median_us - floor.median_us)} us\n`,
  )
}
console.log(`load average after: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`)
console.log(JSON.stringify({ n: N, node: process.version, openai: openaiVersion, results }))

await gr.close()
await emu.stop()
