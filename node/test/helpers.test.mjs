// client.route / countTokens / estimateCost / flush / close, the module-level countTokens /
// estimateCost / cost, and the event loop staying responsive during a 1 MB token count.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'

import {
  ClientClosedError,
  ConfigError,
  GateRouter,
  InvalidRequestError,
  cost,
  countTokens,
  countTokensSync,
  estimateCost,
  estimateCostSync,
} from 'gaterouter'
import { Emulator } from '../testing/emulator.mjs'

const msgs = [{ role: 'user', content: 'Hello, how are you?' }]

let emu
let client

before(async () => {
  emu = await Emulator.start()
  client = new GateRouter({ config: emu.config() })
})

after(async () => {
  await client?.close()
  await emu?.stop()
})

describe('client.route', () => {
  test('auto (the default model): a scored decision with camelCase fields', () => {
    const d = client.route({ messages: msgs })
    assert.equal(d.mode, 'auto')
    assert.equal(typeof d.score, 'number')
    assert.ok(['light', 'standard', 'heavy'].includes(d.tier), d.tier)
    assert.match(d.chosen, /^[a-z]+\/.+/)
    assert.equal(d.candidates[0].model, d.chosen)
    assert.ok(d.estimatedPromptTokens > 0)
    assert.ok(d.features.length > 0 && 'contribution' in d.features[0])
    assert.equal(d.estimated_prompt_tokens, undefined)
    assert.equal(typeof d.reason, 'string')
  })

  test('an explicit model routes to itself; the call then goes there', async () => {
    const d = client.route({ model: 'anthropic/claude-haiku-4-5', messages: msgs })
    assert.equal(d.mode, 'explicit')
    assert.equal(d.chosen, 'anthropic/claude-haiku-4-5')
    assert.equal(d.score, undefined)
  })

  test('errors are typed and name the field', () => {
    assert.throws(() => client.route({ model: 'nosuch/model', messages: msgs }), InvalidRequestError)
    assert.throws(() => client.route({ messages: [] }), (e) => e instanceof InvalidRequestError && e.field === 'messages')
    assert.throws(() => client.route({ messages: msgs, temprature: 1 }), (e) => e.code === 'INVALID_REQUEST' && /temprature/.test(e.message))
    assert.throws(() => client.route(null), InvalidRequestError)
  })
})

describe('client.countTokens / estimateCost', () => {
  test('countTokens: {tokens, exact, breakdown} for the model, or the routed one for auto', async () => {
    const c = await client.countTokens({ model: 'openai/gpt-4o', messages: msgs })
    assert.deepEqual(c, { tokens: 13, exact: true, breakdown: { text: 6, overhead: 7, names: 0, tools: 0, images: 0, imagesAssumed: 0 } })
    const auto = await client.countTokens({ messages: msgs })
    assert.ok(auto.tokens > 0)
    // Tools count, and make the count an estimate.
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
    const withTools = await client.countTokens({ model: 'openai/gpt-4o', messages: msgs, tools })
    assert.ok(withTools.breakdown.tools > 0 && withTools.tokens > c.tokens)
    assert.equal(withTools.exact, false)
  })

  test('estimateCost: expected <= max, in integer micro-dollars, camelCase', async () => {
    const e = await client.estimateCost({ model: 'openai/gpt-4o', messages: msgs, max_tokens: 1000 })
    assert.equal(e.prompt.tokens, 13)
    assert.equal(e.maxCompletionTokens, 1000)
    assert.equal(e.max.pricedAs, 'openai/gpt-4o')
    assert.ok(Number.isInteger(e.expected.totalMicros) && e.expected.totalMicros > 0)
    assert.ok(e.expected.totalMicros <= e.max.totalMicros)
    // gpt-4o: $2.50/M input, $10/M output -> 13 in + 1000 out.
    assert.equal(e.max.totalMicros, Math.round(13 * 2.5 + 1000 * 10))
    // The module-level form (built-in catalog) agrees.
    assert.deepEqual(await estimateCost({ model: 'openai/gpt-4o', messages: msgs, max_tokens: 1000 }), e)
    assert.deepEqual(estimateCostSync({ model: 'openai/gpt-4o', messages: msgs, max_tokens: 1000 }), e)
  })

  test('bad input rejects with a typed error', async () => {
    await assert.rejects(client.countTokens({ model: 'openai/gpt-4o', messages: 'hi' }), InvalidRequestError)
    // An unpriced model is a config matter: the message says which [prices] entry to add.
    await assert.rejects(client.estimateCost({ model: 'nosuch/x', messages: msgs }), (e) => e instanceof ConfigError && /prices/.test(e.message))
    await assert.rejects(estimateCost({ messages: msgs }), (e) => e instanceof InvalidRequestError && e.field === 'model')
    await assert.rejects(estimateCost({ model: 'openai/no-such-model', messages: msgs }), (e) => e.code === 'CONFIG')
  })
})

describe('module-level countTokens / cost', () => {
  test('text and messages, default model openai/gpt-4o, other models estimated', async () => {
    assert.equal(await countTokens('hello world'), 2)
    assert.equal(countTokensSync('hello world'), 2)
    assert.equal(await countTokens(msgs), 13)
    assert.equal(await countTokens(''), 0)
    const claude = await countTokens('hello world '.repeat(100), { model: 'anthropic/claude-sonnet-4-5' })
    assert.ok(claude > 100, `${claude}`)
    await assert.rejects(countTokens(42), InvalidRequestError)
    assert.throws(() => countTokensSync({ text: 'x' }), InvalidRequestError)
  })

  test('cost() of a response usage', async () => {
    const r = await client.chat.completions.create({ model: 'openai/gpt-4o', messages: msgs })
    const c = cost(r.usage, { model: 'openai/gpt-4o' })
    assert.equal(c.totalMicros, Math.round(r.usage.prompt_tokens * 2.5 + r.usage.completion_tokens * 10))
    assert.equal(c.currency, 'USD')
    const batch = cost(r.usage, { model: 'openai/gpt-4o', batch: true })
    assert.ok(batch.batch && batch.totalMicros < c.totalMicros)
    assert.throws(() => cost(r.usage, {}), (e) => e.field === 'model')
    assert.throws(() => cost({ prompt_tokens: 'many' }, { model: 'openai/gpt-4o' }), (e) => e.field === 'usage')
  })
})

describe('flush and close', () => {
  test('flush without reporting resolves drained; close is idempotent; later calls throw ClientClosedError', async () => {
    const c = new GateRouter({ config: emu.config() })
    const off = { drained: true, delivered: 0, pending: 0, refused: 0, refusals: [], lastRefusal: null, deadLetters: 0, overflow: 0, oldestPendingAgeMs: null, lastError: null, spoolDir: null }
    assert.deepEqual(await c.flush(), off)
    assert.deepEqual(c.usageStatus(), off)
    await assert.rejects(c.flush({ timeoutMs: -1 }), (e) => e.field === 'timeoutMs')
    await c.close()
    await c.close()
    assert.throws(() => c.route({ messages: msgs }), ClientClosedError)
    await assert.rejects(c.countTokens({ messages: msgs }), ClientClosedError)
    await assert.rejects(c.estimateCost({ messages: msgs }), ClientClosedError)
    await assert.rejects(c.flush(), ClientClosedError)
    await assert.rejects(c.chat.completions.create({ model: 'openai/gpt-4o', messages: msgs }), ClientClosedError)
  })
})

describe('event loop during a 1 MB token count', () => {
  /** 1 MiB of varied text, unique per call (the core caches counts of long texts). */
  function megabyte() {
    const words = randomBytes(1 << 18).toString('base64').match(/.{1,7}/g)
    return `${words.join(' ')} 漢字 ünïcödé`.slice(0, 1 << 20)
  }

  /** Run `fn` while a 2 ms interval ticks; return its value, the ticks and the time taken. */
  async function ticking(fn) {
    let ticks = 0
    const timer = setInterval(() => ticks++, 2)
    const t0 = performance.now()
    try {
      const value = await fn()
      return { value, ticks, ms: performance.now() - t0 }
    } finally {
      clearInterval(timer)
    }
  }

  test('countTokens runs off the main thread: a timer keeps firing', async (t) => {
    // Four distinct megabytes in a row, so the count lasts long enough to tick on a fast
    // machine; the sync form, on the same inputs, is the control (it must block).
    const texts = Array.from({ length: 4 }, megabyte)
    const sync = await ticking(async () => texts.map((s) => countTokensSync(s, { model: 'openai/gpt-4.1' })))
    const textsB = Array.from({ length: 4 }, megabyte)
    const async_ = await ticking(async () => {
      const out = []
      for (const s of textsB) out.push(await countTokens(s))
      return out
    })
    t.diagnostic(`sync: ${sync.ticks} ticks in ${sync.ms.toFixed(0)} ms; async: ${async_.ticks} ticks in ${async_.ms.toFixed(0)} ms`)
    assert.ok(async_.value.every((n) => n > 100_000), String(async_.value))
    assert.equal(sync.ticks, 0, 'the control: a count on the main thread blocks every tick')
    // Ticks are 2 ms apart; allow a loaded machine to lose most of them, not all.
    const expected = async_.ms / 2
    assert.ok(async_.ticks >= Math.max(5, expected * 0.2), `only ${async_.ticks} ticks in ${async_.ms.toFixed(0)} ms`)
  })

  test('client.countTokens on a 1 MB prompt does not block either', async (t) => {
    const messages = [{ role: 'user', content: megabyte() }, { role: 'user', content: megabyte() }]
    const r = await ticking(() => client.countTokens({ model: 'openai/gpt-4o', messages }))
    t.diagnostic(`${r.ticks} ticks in ${r.ms.toFixed(0)} ms for ${r.value.tokens} tokens`)
    assert.ok(r.value.tokens > 200_000)
    assert.ok(r.ticks >= Math.max(3, (r.ms / 2) * 0.2), `only ${r.ticks} ticks in ${r.ms.toFixed(0)} ms`)
  })
})
