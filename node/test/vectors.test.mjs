// The shared JSON vectors (tests/vectors/) give the same results in Node as in Rust and
// Python (the same expectations as python/tests/test_vectors.py).
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'

import { GateRouter, cost, countTokens, countTokensSync } from 'gaterouter'
import { Emulator, ROOT } from '../testing/emulator.mjs'

const native = createRequire(import.meta.url)('../native.js')
const load = (name) => JSON.parse(readFileSync(path.join(ROOT, 'tests', 'vectors', name), 'utf8'))
const ENCODING_MODEL = { o200k_base: 'openai/gpt-4o', cl100k_base: 'openai/gpt-4' }

/** `camelCase` -> `snake_case`, to compare the helpers' results with the vectors. */
const snake = (k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)

describe('tokens.json: text token counts', () => {
  const { texts } = load('tokens.json')
  assert.ok(texts.length >= 20)
  for (const c of texts) {
    test(c.name, async () => {
      for (const [encoding, model] of Object.entries(ENCODING_MODEL)) {
        assert.equal(await countTokens(c.text, { model }), c[encoding], `${encoding} (async)`)
        assert.equal(countTokensSync(c.text, { model }), c[encoding], `${encoding} (sync)`)
      }
    })
  }
})

describe('chat_tokens.json: chat prompt tokens', () => {
  for (const c of load('chat_tokens.json').cases) {
    test(c.name, async () => {
      const { messages, model: _model, ...params } = c.request
      for (const [model, expected] of Object.entries(c.expected_prompt_tokens)) {
        assert.equal(await countTokens(messages, { model, ...params }), expected, model)
        assert.equal(countTokensSync(messages, { model, ...params }), expected, `${model} (sync)`)
      }
    })
  }
})

describe('cost.json: costs from usage', () => {
  for (const c of load('cost.json').cases) {
    test(c.name, () => {
      const got = cost(c.usage, { model: c.model, batch: c.options.batch, cacheWrite1h: c.options.cache_write_1h })
      const bySnake = Object.fromEntries(Object.entries(got).map(([k, v]) => [snake(k), v]))
      for (const [field, expected] of Object.entries(c.expected)) {
        // `tier_above_input_tokens: null` in the vectors is an absent field here.
        assert.equal(bySnake[field] ?? null, expected, field)
      }
    })
  }
})

describe('routing.json: routing scores', () => {
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
  const vectors = load('routing.json')
  const tol = vectors.tolerance ?? 1e-6
  for (const c of vectors.cases) {
    test(c.name, () => {
      const d = client.route(c.request)
      assert.ok(Math.abs(d.score - c.score) <= tol, `score ${d.score} vs ${c.score}`)
      assert.equal(d.tier, c.tier)
    })
  }
  // routing_weights_version.json (checked against the core by bindings/ffi/tests/shim.rs):
  // an auto decision names the weights that scored it, with the default config the builtin ones.
  test('routing_weights_version.json: auto decisions name the builtin weights', () => {
    const { builtin_weights_version: builtin } = load('routing_weights_version.json')
    assert.match(builtin, /^[0-9a-f]{16}$/)
    const d = client.route(vectors.cases[0].request)
    assert.equal(d.weightsVersion, builtin)
    assert.equal(d.weights_version, undefined)
    assert.equal(d.learning, undefined) // no organization learning
    const explicit = client.route({ ...vectors.cases[0].request, model: 'openai/gpt-4o-mini' })
    assert.equal(explicit.weightsVersion, undefined)
  })
  test('[policy] weights_public_key passes through (no collector: the builtin weights score)', async () => {
    const { builtin_weights_version: builtin } = load('routing_weights_version.json')
    const pinned = new GateRouter({
      config: emu.config({ policy: { weights_public_key: load('records.json').public_key } }),
    })
    try {
      assert.equal(pinned.route(vectors.cases[0].request).weightsVersion, builtin)
    } finally {
      await pinned.close()
    }
  })
})

test('records.json: canonical bytes and signatures', () => {
  const v = load('records.json')
  const sign = (record, key) => {
    const out = JSON.parse(native.signRecord(JSON.stringify(record), key))
    assert.equal(out.error, undefined, JSON.stringify(out.error))
    return out.ok
  }
  for (const c of v.vectors) {
    const { canonical, signature } = sign(c.record, v.seed_base64)
    assert.equal(canonical, c.canonical, c.name)
    assert.equal(signature, c.signature, c.name)
  }
  // The PEM form of the same key signs identically.
  assert.equal(sign(v.vectors[0].record, v.private_key_pem).signature, v.vectors[0].signature)
})
