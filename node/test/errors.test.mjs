// Typed errors from the emulator's fault queue: one mapping (Rust kind code -> err.code).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import {
  APITimeoutError,
  AuthenticationError,
  ClientClosedError,
  ContextLengthExceededError,
  GateRouter,
  GateRouterError,
  InvalidRequestError,
  InvalidResponseError,
  ProviderUnavailableError,
  RateLimitError,
  StreamInterruptedError,
} from 'gaterouter'
import { Emulator } from '../testing/emulator.mjs'

const MODEL = { openai: 'openai/gpt-4o', anthropic: 'anthropic/claude-haiku-4-5', gemini: 'gemini/gemini-2.5-pro', deepseek: 'deepseek/deepseek-chat' }
const FAULTS = [
  ['rate_limit', RateLimitError, 'RATE_LIMITED'],
  ['auth', AuthenticationError, 'AUTH'],
  ['server_error', ProviderUnavailableError, 'PROVIDER_UNAVAILABLE'],
  ['context_length', ContextLengthExceededError, 'CONTEXT_LENGTH_EXCEEDED'],
  ['bad_request', InvalidRequestError, 'INVALID_REQUEST'],
  ['malformed_json', InvalidResponseError, 'INVALID_RESPONSE'],
]
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

describe('provider errors are typed', () => {
  for (const provider of ['openai', 'anthropic', 'gemini', 'deepseek']) {
    for (const [fault, Cls, code] of FAULTS) {
      test(`${fault} from ${provider} -> ${Cls.name} (${code})`, async () => {
        await emu.fault({ fault, provider, times: 1, retry_after: 2 })
        await assert.rejects(client.chat.completions.create({ model: MODEL[provider], messages: user('x') }), (err) => {
          assert.ok(err instanceof Cls, `${err.name}: ${err.message}`)
          assert.ok(err instanceof GateRouterError)
          assert.ok(err instanceof Error)
          assert.equal(err.name, Cls.name)
          assert.equal(err.code, code)
          assert.equal(err.provider, provider)
          assert.ok(err.message.length > 0)
          if (fault === 'rate_limit') {
            assert.equal(err.retryAfter, 2)
            assert.equal(err.status, 429)
          } else {
            assert.equal(err.retryAfter, null)
          }
          if (fault === 'auth') assert.equal(err.status, 401)
          if (fault === 'server_error') assert.equal(err.status, 500)
          if (fault !== 'malformed_json') assert.equal(typeof err.providerMessage, 'string')
          return true
        })
        // The fault was consumed: the same client works again.
        const ok = await client.chat.completions.create({ model: MODEL[provider], messages: user('again') })
        assert.match(ok.choices[0].message.content, /again/)
      })
    }
  }

  test('fractional retry-after is kept in seconds', async () => {
    await emu.fault({ fault: 'rate_limit', provider: 'openai', times: 1, retry_after: 1.5 })
    await assert.rejects(client.chat.completions.create({ model: MODEL.openai, messages: user('x') }), (err) => {
      assert.equal(err.code, 'RATE_LIMITED')
      assert.equal(err.retryAfter, 1.5)
      return true
    })
  })

  test('with retries on, a transient 429 is retried by the core and succeeds', async () => {
    const retrying = new GateRouter({ config: emu.config() })
    await emu.fault({ fault: 'rate_limit', provider: 'anthropic', times: 1, retry_after: 0.05 })
    const resp = await retrying.chat.completions.create({ model: MODEL.anthropic, messages: user('retried') })
    assert.match(resp.choices[0].message.content, /retried/)
    await retrying.close()
  })
})

describe('stream errors', () => {
  test('an error opening a stream rejects create()', async () => {
    await emu.fault({ fault: 'rate_limit', provider: 'gemini', times: 1, retry_after: 3 })
    await assert.rejects(
      client.chat.completions.create({ model: MODEL.gemini, messages: user('x'), stream: true }),
      (err) => err instanceof RateLimitError && err.retryAfter === 3 && err.provider === 'gemini',
    )
  })

  test('a cut stream throws StreamInterruptedError while iterating', async () => {
    // Directives in the prompt; `slow_stream` spaces the events out because with no delay
    // the emulator's server drops its still-buffered headers and events along with the
    // connection, so the cut would look like a refused connection instead.
    const prompt = 'x [[emulator:cut_stream;after_events=3]] [[emulator:slow_stream;delay_ms=20]]'
    const stream = await client.chat.completions.create({ model: MODEL.anthropic, messages: user(prompt), stream: true })
    let seen = 0
    await assert.rejects(
      (async () => {
        for await (const _ of stream) seen++
      })(),
      (err) => err instanceof StreamInterruptedError && err.code === 'STREAM_INTERRUPTED' && err.provider === 'anthropic',
    )
    assert.ok(seen >= 1, 'chunks before the cut are delivered')
    assert.equal(stream.usage, null)
  })
})

test('a request timeout is APITimeoutError', async () => {
  const impatient = new GateRouter({ config: emu.config({ timeouts: { request_ms: 300 }, retry: { max_retries: 0 } }) })
  await emu.fault({ fault: 'slow', provider: 'openai', delay_ms: 2000, times: 1 })
  const t0 = Date.now()
  await assert.rejects(
    impatient.chat.completions.create({ model: MODEL.openai, messages: user('x') }),
    (err) => err instanceof APITimeoutError && err.code === 'TIMEOUT',
  )
  assert.ok(Date.now() - t0 < 1500)
  await impatient.close()
})

test('calls after close() reject with ClientClosedError', async () => {
  const c = new GateRouter({ config: emu.config() })
  const report = await c.close()
  assert.equal(typeof report.drained, 'boolean', JSON.stringify(report))
  assert.deepEqual(await c.close(), report, 'idempotent: the first report again')
  await assert.rejects(c.close({ graceMs: -1 }), (err) => err instanceof InvalidRequestError && err.field === 'graceMs')
  await assert.rejects(
    c.chat.completions.create({ model: MODEL.openai, messages: user('x') }),
    (err) => err instanceof ClientClosedError && err.code === 'CLIENT_CLOSED',
  )
  await assert.rejects(c.chat.completions.create({ model: MODEL.openai, messages: user('x'), stream: true }), ClientClosedError)
})

test('close({ graceMs }) lets a call finish within the grace and cuts one that outlasts it', async () => {
  const c = new GateRouter({ config: emu.config() })
  await emu.fault({ fault: 'slow', provider: 'openai', delay_ms: 300, times: 1 })
  const quick = c.chat.completions.create({ model: MODEL.openai, messages: user('finishes') })
  await new Promise((r) => setTimeout(r, 100))
  const report = await c.close({ graceMs: 3000 })
  const answer = await quick
  assert.ok(answer.choices[0].message.content.length > 0, 'the call in flight completed')
  assert.equal(typeof report.delivered, 'number')

  const d = new GateRouter({ config: emu.config() })
  await emu.fault({ fault: 'slow', provider: 'openai', delay_ms: 3000, times: 1 })
  const slow = d.chat.completions.create({ model: MODEL.openai, messages: user('too slow') })
  const rejected = assert.rejects(slow, (err) => err instanceof ClientClosedError && err.code === 'CLIENT_CLOSED')
  await new Promise((r) => setTimeout(r, 100))
  const t0 = Date.now()
  await d.close({ graceMs: 100 })
  await rejected
  assert.ok(Date.now() - t0 < 2000, 'cut after the grace, not after the provider')
})
