// Usage records reach a real collector (target/debug/gaterouter-collector on SQLite):
// none lost or duplicated under 500 concurrent calls, a cancelled stream still yields a
// `cancelled` record, and close() drains the spool and lets the process exit.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, test } from 'node:test'

import { GateRouter } from 'gaterouter'
import { Collector } from '../testing/collector.mjs'
import { Emulator, MODELS } from '../testing/emulator.mjs'

const user = (content) => [{ role: 'user', content }]

let emu
let collector

before(async () => {
  ;[emu, collector] = await Promise.all([Emulator.start(), Collector.start()])
})

after(async () => {
  await Promise.all([emu?.stop(), collector?.stop()])
})

/** A client reporting to the collector under a fresh API key. */
async function reportingClient(keyId) {
  const { identity, reporting } = await collector.registerKey('acme', keyId)
  return new GateRouter({ config: emu.config({ retry: { max_retries: 0 }, identity, reporting }) })
}

describe('usage records', () => {
  test('500 concurrent calls: after flush the collector holds exactly 500 new records', { timeout: 90_000 }, async (t) => {
    const client = await reportingClient('k_concurrent')
    try {
      const before = await collector.summary()
      const dupBefore = (await collector.counters()).collector_records_duplicate_total ?? 0
      const results = await Promise.all(
        Array.from({ length: 500 }, (_, i) =>
          client.chat.completions.create({ model: MODELS[i % 4], messages: user(`record ${i}`), metadata: { n: String(i) } }),
        ),
      )
      assert.equal(results.length, 500)
      const t0 = performance.now()
      const flushed = await client.flush({ timeoutMs: 30_000 })
      t.diagnostic(`flush took ${(performance.now() - t0).toFixed(0)} ms: ${JSON.stringify(flushed)}`)
      assert.equal(flushed.drained, true)
      assert.deepEqual([flushed.delivered, flushed.pending, flushed.refused, flushed.lastRefusal], [500, 0, 0, null])

      const mine = await collector.summary('?key=k_concurrent')
      assert.equal(mine.calls, 500, 'records stored for this key')
      assert.equal(mine.errors, 0)
      // Tokens match what the calls reported, record for record in total.
      const prompt = results.reduce((n, r) => n + r.usage.prompt_tokens, 0)
      const completion = results.reduce((n, r) => n + r.usage.completion_tokens, 0)
      assert.equal(mine.prompt_tokens, prompt)
      assert.equal(mine.completion_tokens, completion)
      // Exactly 500 new records in the whole database, and none sent twice.
      assert.equal((await collector.summary()).calls - before.calls, 500)
      assert.equal((await collector.counters()).collector_records_duplicate_total ?? 0, dupBefore)
      assert.deepEqual(await collector.byStatus('k_concurrent'), { ok: 500 })
      // Each call's tag arrived once: 500 distinct `n` values, one record each.
      for (const n of ['0', '137', '499']) {
        assert.equal((await collector.summary(`?key=k_concurrent&tag=n:${n}`)).calls, 1, `tag n=${n}`)
      }
    } finally {
      await client.close()
    }
  })

  test('a stream cancelled by an AbortSignal mid-way yields a `cancelled` record', async () => {
    const client = await reportingClient('k_cancel')
    try {
      await emu.fault({ fault: 'slow_stream', provider: 'anthropic', delay_ms: 2000, times: 1 })
      const ctrl = new AbortController()
      const stream = await client.chat.completions.create(
        { model: 'anthropic/claude-sonnet-4-5', messages: user('Tell a fox story'), stream: true },
        { signal: ctrl.signal },
      )
      const it = stream[Symbol.asyncIterator]()
      assert.equal((await it.next()).done, false)
      const pending = it.next()
      setTimeout(() => ctrl.abort(), 50)
      await assert.rejects(pending, { name: 'AbortError' })
      // A finished call on the same key, to tell the two records apart.
      await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: user('after') })
      assert.equal((await client.flush({ timeoutMs: 10_000 })).drained, true)
      assert.deepEqual(await collector.byStatus('k_cancel'), { cancelled: 1, ok: 1 })
    } finally {
      await client.close()
    }
  })

  test('a non-streaming call aborted while its request is out yields a `cancelled` record', async () => {
    const client = await reportingClient('k_abort_chat')
    try {
      await emu.fault({ fault: 'slow', provider: 'openai', delay_ms: 3000, times: 1 })
      const ctrl = new AbortController()
      const pending = client.chat.completions.create({ model: 'openai/gpt-4o', messages: user('abandoned') }, { signal: ctrl.signal })
      // Abort once the request is out: the emulator has taken the slow fault (the client
      // may first fetch its key's policy and binding, which takes a while on a busy machine).
      const deadline = Date.now() + 10_000
      while ((await emu.stats()).faults_queued > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20))
      }
      // ...and give the client a moment to be waiting on the answer (not still sending).
      await new Promise((r) => setTimeout(r, 150))
      ctrl.abort()
      await assert.rejects(pending, { name: 'AbortError' })
      const report = await client.flush({ timeoutMs: 10_000 })
      assert.equal(report.drained, true)
      assert.deepEqual(await collector.byStatus('k_abort_chat'), { cancelled: 1 }, JSON.stringify(report))
      // It carries the prompt the provider received (and bills), not a completion.
      const s = await collector.summary('?key=k_abort_chat')
      assert.ok(s.prompt_tokens > 0, JSON.stringify(s))
      assert.equal(s.completion_tokens, 0)
    } finally {
      await client.close()
    }
  })

  test('close() writes the records of streams it aborts, then drains them', async () => {
    const client = await reportingClient('k_close')
    await emu.fault({ fault: 'slow_stream', provider: 'gemini', delay_ms: 3000, times: 1 })
    const stream = await client.chat.completions.create({ model: 'gemini/gemini-2.5-flash', messages: user('Tell a fox story'), stream: true })
    const it = stream[Symbol.asyncIterator]()
    assert.equal((await it.next()).done, false)
    await client.close()
    await assert.rejects(it.next(), { code: 'CLIENT_CLOSED' })
    assert.deepEqual(await collector.byStatus('k_close'), { cancelled: 1 })
  })

  test('a process that reports, flushes and closes exits by itself with its records delivered', { timeout: 30_000 }, async (t) => {
    const { identity, reporting } = await collector.registerKey('acme', 'k_child')
    const config = emu.config({ identity, reporting })
    const t0 = performance.now()
    const { code, out, err } = await new Promise((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `
          import { GateRouter, countTokens } from 'gaterouter'
          const client = new GateRouter({ config: JSON.parse(process.env.GR_CONFIG) })
          const msgs = [{ role: 'user', content: 'bye' }]
          const r = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: msgs })
          const s = await client.chat.completions.create({ model: 'deepseek/deepseek-chat', messages: msgs, stream: true })
          for await (const _ of s);
          const route = client.route({ messages: msgs })
          const n = await client.countTokens({ model: 'openai/gpt-4o', messages: msgs })
          const est = await client.estimateCost({ model: 'openai/gpt-4o', messages: msgs })
          await countTokens('x'.repeat(100000))
          const f = await client.flush()
          await client.close()
          console.log(JSON.stringify({ ok: r.usage.total_tokens > 0, chosen: route.chosen, tokens: n.tokens, est: est.expected.totalMicros > 0, drained: f.drained }))
          `,
        ],
        { cwd: new URL('..', import.meta.url), env: { ...process.env, GR_CONFIG: JSON.stringify(config) }, stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let out = ''
      let err = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (err += d))
      const killer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`child did not exit within 15 s; stdout=${out} stderr=${err}`))
      }, 15_000)
      child.on('exit', (code) => {
        clearTimeout(killer)
        resolve({ code, out, err })
      })
    })
    const ms = performance.now() - t0
    t.diagnostic(`child ran and exited in ${ms.toFixed(0)} ms`)
    assert.equal(code, 0, err)
    const res = JSON.parse(out.trim())
    assert.equal(res.ok, true)
    assert.equal(res.tokens, 8)
    assert.equal(res.est, true)
    assert.equal(res.drained, true)
    assert.match(res.chosen, /^[a-z]+\/.+/)
    assert.ok(ms < 5000, `exit took ${ms.toFixed(0)} ms`)
    assert.deepEqual(await collector.byStatus('k_child'), { ok: 2 })
  })
})
