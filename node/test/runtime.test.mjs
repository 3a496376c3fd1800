// Concurrency, cancellation, event-loop health and process lifetime.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'

import { AbortError, ClientClosedError, GateRouter, GateRouterError } from 'gaterouter'
import { Emulator, MODELS } from '../testing/emulator.mjs'

const user = (content) => [{ role: 'user', content }]

let emu
let client

before(async () => {
  emu = await Emulator.start()
  client = new GateRouter({ config: emu.config({ retry: { max_retries: 0 } }) })
})

after(async () => {
  await client?.close()
  await emu?.stop()
})

/** Wait until the client has no call registered for cancellation (entries must not leak). */
async function noPendingCalls(c) {
  for (let i = 0; i < 100 && c._native.pendingCalls !== 0; i++) await sleep(10)
  assert.equal(c._native.pendingCalls, 0)
}

/** Run `fn` while a 5 ms interval ticks; report ticks and the longest gap between them. */
async function withTicker(fn) {
  let ticks = 0
  let last = performance.now()
  let maxGap = 0
  const timer = setInterval(() => {
    const now = performance.now()
    maxGap = Math.max(maxGap, now - last)
    last = now
    ticks++
  }, 5)
  try {
    const value = await fn()
    return { value, ticks, maxGap }
  } finally {
    clearInterval(timer)
  }
}

describe('concurrency', () => {
  test('500 concurrent calls on one client all succeed, with the right answers', async (t) => {
    const t0 = performance.now()
    const calls = Array.from({ length: 500 }, (_, i) =>
      client.chat.completions.create({ model: MODELS[i % 4], messages: user(`call number ${i}`) }),
    )
    const started = performance.now() - t0
    // The ticker starts once all calls are in flight: it measures the waits, not the loop above.
    const { value: results, maxGap } = await withTicker(() => Promise.all(calls))
    const elapsed = performance.now() - t0
    t.diagnostic(`500 calls started in ${started.toFixed(0)} ms, all answered in ${elapsed.toFixed(0)} ms; longest event-loop gap ${maxGap.toFixed(1)} ms`)
    assert.equal(results.length, 500)
    results.forEach((r, i) => {
      assert.equal(r.model, MODELS[i % 4])
      assert.match(r.choices[0].message.content, new RegExp(`call number ${i}\\b`))
    })
    // The JS thread only converts strings: timers keep firing throughout (the bound is
    // loose for loaded CI machines; a loop blocked on the network would stall for the
    // whole run).
    assert.ok(maxGap < 1000, `event loop stalled for ${maxGap.toFixed(0)} ms during the calls (${elapsed.toFixed(0)} ms total)`)
    await noPendingCalls(client)
  })

  test('concurrent streams interleave', async () => {
    const streams = await Promise.all(
      MODELS.map((model) => client.chat.completions.create({ model, messages: user('Tell a fox story'), stream: true })),
    )
    const texts = await Promise.all(
      streams.map(async (s) => {
        let t = ''
        for await (const c of s) t += c.choices[0]?.delta.content ?? ''
        return t
      }),
    )
    texts.forEach((t) => assert.ok(t.length > 0))
    streams.forEach((s) => assert.ok(s.usage && s.usage.total_tokens > 0))
  })
})

describe('event loop', () => {
  test('timers keep firing while a slow call is in flight', async (t) => {
    await emu.fault({ fault: 'slow', provider: 'openai', delay_ms: 600, times: 1 })
    const { value, ticks, maxGap } = await withTicker(() =>
      client.chat.completions.create({ model: 'openai/gpt-4o', messages: user('slow one') }),
    )
    t.diagnostic(`${ticks} ticks of 5 ms during a 600 ms call; longest gap ${maxGap.toFixed(1)} ms`)
    assert.match(value.choices[0].message.content, /slow one/)
    // ~120 ticks at 5 ms on an idle machine; a blocked loop would give 0 or 1.
    assert.ok(ticks >= 20, `only ${ticks} ticks in 600 ms`)
    assert.ok(maxGap < 300, `longest gap ${maxGap.toFixed(0)} ms`)
  })
})

describe('cancellation', () => {
  test('an AbortSignal cancels a slow call at once and the client stays usable', async () => {
    await emu.fault({ fault: 'slow', provider: 'openai', delay_ms: 3000, times: 1 })
    const ctrl = new AbortController()
    const t0 = performance.now()
    const call = client.chat.completions.create({ model: 'openai/gpt-4o', messages: user('x') }, { signal: ctrl.signal })
    setTimeout(() => ctrl.abort(new Error('user gave up')), 100)
    await assert.rejects(call, (err) => {
      assert.ok(err instanceof AbortError)
      assert.ok(!(err instanceof GateRouterError))
      assert.equal(err.name, 'AbortError')
      assert.equal(err.code, 'ABORT_ERR')
      assert.equal(err.cause.message, 'user gave up')
      return true
    })
    const elapsed = performance.now() - t0
    assert.ok(elapsed < 1000, `abort took ${elapsed.toFixed(0)} ms`)
    // The Rust future was dropped (its registration is gone) ...
    await noPendingCalls(client)
    // ... and the client still works.
    const r = await client.chat.completions.create({ model: 'openai/gpt-4o', messages: user('after abort') })
    assert.match(r.choices[0].message.content, /after abort/)
  })

  test('signal in the body (and AbortSignal.timeout) works too', async () => {
    await emu.fault({ fault: 'slow', provider: 'anthropic', delay_ms: 3000, times: 1 })
    const t0 = performance.now()
    await assert.rejects(
      client.chat.completions.create({ model: 'anthropic/claude-haiku-4-5', messages: user('x'), signal: AbortSignal.timeout(150) }),
      (err) => err.name === 'AbortError' && err.cause?.name === 'TimeoutError',
    )
    assert.ok(performance.now() - t0 < 1000)
    await noPendingCalls(client)
  })

  test('an already-aborted signal rejects without a call', async () => {
    const before = (await emu.stats()).total
    await assert.rejects(
      client.chat.completions.create({ model: 'openai/gpt-4o', messages: user('x') }, { signal: AbortSignal.abort() }),
      AbortError,
    )
    assert.equal((await emu.stats()).total, before)
  })

  test('aborting a stream mid-way rejects the pending read at once', async () => {
    await emu.fault({ fault: 'slow_stream', provider: 'gemini', delay_ms: 2000, times: 1 })
    const ctrl = new AbortController()
    const stream = await client.chat.completions.create(
      { model: 'gemini/gemini-2.5-flash', messages: user('Tell a fox story'), stream: true },
      { signal: ctrl.signal },
    )
    const it = stream[Symbol.asyncIterator]()
    const first = await it.next()
    assert.equal(first.done, false)
    const pending = it.next()
    const t0 = performance.now()
    setTimeout(() => ctrl.abort(), 50)
    await assert.rejects(pending, AbortError)
    assert.ok(performance.now() - t0 < 1000)
    assert.deepEqual(await it.next(), { done: true, value: undefined })
  })

  test('stream.controller.abort() stops a stream', async () => {
    await emu.fault({ fault: 'slow_stream', provider: 'openai', delay_ms: 2000, times: 1 })
    const stream = await client.chat.completions.create({ model: 'openai/gpt-4o', messages: user('Tell a fox story'), stream: true })
    const t0 = performance.now()
    setTimeout(() => stream.controller.abort(), 50)
    await assert.rejects(
      (async () => {
        for await (const _ of stream);
      })(),
      AbortError,
    )
    assert.ok(performance.now() - t0 < 1000)
  })

  test('close() aborts in-flight calls with ClientClosedError', async () => {
    const c = new GateRouter({ config: emu.config() })
    await emu.fault({ fault: 'slow', provider: 'deepseek', delay_ms: 3000, times: 1 })
    const call = c.chat.completions.create({ model: 'deepseek/deepseek-chat', messages: user('x') })
    // close() resolves after the aborted calls have unwound (so their usage records are
    // written before the spool drains): the call has rejected by then, so its handler
    // must be attached before awaiting close(), or the rejection would be unhandled.
    const rejected = assert.rejects(call, ClientClosedError)
    await sleep(100)
    const t0 = performance.now()
    await c.close()
    await rejected
    assert.ok(performance.now() - t0 < 1000)
    // Every registration is gone by the time close() resolves.
    assert.equal(c._native.pendingCalls, 0)
  })
})

describe('process lifetime', () => {
  /** Run a child node process with the given ESM source; resolve with its exit details. */
  function runChild(source, timeoutMs = 10_000) {
    return new Promise((resolve, reject) => {
      const t0 = performance.now()
      const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
        cwd: new URL('..', import.meta.url),
        env: { ...process.env, GR_CONFIG: JSON.stringify(emu.config()) },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let out = ''
      let err = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (err += d))
      const killer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`child did not exit within ${timeoutMs} ms; stdout=${out} stderr=${err}`))
      }, timeoutMs)
      child.on('exit', (code) => {
        clearTimeout(killer)
        resolve({ code, out, err, ms: performance.now() - t0 })
      })
    })
  }

  test('a process that calls, streams and closes the client exits by itself', async (t) => {
    const { code, out, err, ms } = await runChild(`
      import { GateRouter } from 'gaterouter'
      const client = new GateRouter({ config: JSON.parse(process.env.GR_CONFIG) })
      const r = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'bye' }] })
      const s = await client.chat.completions.create({ model: 'anthropic/claude-sonnet-4-5', messages: [{ role: 'user', content: 'bye' }], stream: true })
      for await (const _ of s);
      await client.close()
      console.log(r.choices[0].message.content.includes('bye') && s.usage !== null ? 'done' : 'bad')
    `)
    assert.equal(code, 0, err)
    t.diagnostic(`child ran and exited in ${ms.toFixed(0)} ms`)
    assert.equal(out.trim(), 'done')
    assert.ok(ms < 5000, `exit took ${ms.toFixed(0)} ms`)
  })

  test('close() during a slow call lets the process exit at once', async () => {
    await emu.fault({ fault: 'slow', provider: 'openai', delay_ms: 5000, times: 1 })
    const { code, out, err, ms } = await runChild(`
      import { GateRouter } from 'gaterouter'
      const client = new GateRouter({ config: JSON.parse(process.env.GR_CONFIG) })
      client.chat.completions.create({ model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'x' }] })
        .catch((e) => console.log(e.code))
      setTimeout(() => client.close(), 200)
    `)
    assert.equal(code, 0, err)
    assert.equal(out.trim(), 'CLIENT_CLOSED')
    assert.ok(ms < 4000, `exit took ${ms.toFixed(0)} ms`)
  })
})
