// Chat, streaming, tools and input errors through the npm package against the emulator.
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'

import GateRouter, * as gr from 'gaterouter'
import { Emulator, MODELS } from '../testing/emulator.mjs'

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}

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

describe('chat', () => {
  for (const model of MODELS) {
    test(`OpenAI-shaped response from ${model}`, async () => {
      const resp = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Why is the sky blue?' }] })
      assert.equal(resp.object, 'chat.completion')
      assert.equal(resp.model, model)
      assert.equal(resp.choices.length, 1)
      assert.equal(resp.choices[0].message.role, 'assistant')
      assert.match(resp.choices[0].message.content, /Why is the sky blue\?/)
      assert.equal(resp.choices[0].finish_reason, 'stop')
      const u = resp.usage
      assert.ok(u.prompt_tokens > 0 && u.completion_tokens > 0)
      assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens)
    })
  }

  test('null and undefined fields mean "not set"; max_completion_tokens is accepted', async () => {
    const resp = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello there' }],
      temperature: null,
      tools: undefined,
      max_completion_tokens: 64,
      stream: false,
      stream_options: null,
    })
    assert.match(resp.choices[0].message.content, /hello there/)
  })
})

describe('streaming', () => {
  for (const model of MODELS) {
    test(`stream from ${model} matches the whole answer and ends with usage`, async () => {
      const messages = [{ role: 'user', content: 'Tell a fox story' }]
      const whole = await client.chat.completions.create({ model, messages })
      const stream = await client.chat.completions.create({ model, messages, stream: true })
      assert.ok(stream instanceof gr.Stream)
      assert.equal(stream.usage, null, 'usage is only known at the end')
      const chunks = []
      for await (const chunk of stream) chunks.push(chunk)
      assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`)
      for (const c of chunks) {
        assert.equal(c.object, 'chat.completion.chunk')
        assert.equal(c.model, model)
      }
      const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')
      assert.equal(text, whole.choices[0].message.content)
      const last = chunks.at(-1)
      assert.deepEqual(last.choices, [])
      assert.ok(last.usage)
      assert.deepEqual(stream.usage, last.usage)
      assert.equal(stream.usage.completion_tokens, whole.usage.completion_tokens)
      assert.equal(chunks.filter((c) => c.choices[0]?.finish_reason === 'stop').length, 1)
    })
  }

  test('breaking out of for-await closes the stream; iterating again yields nothing', async () => {
    const stream = await client.chat.completions.create({
      model: 'anthropic/claude-sonnet-4-5',
      messages: [{ role: 'user', content: 'Tell a long fox story' }],
      stream: true,
    })
    let n = 0
    for await (const _ of stream) {
      if (++n === 2) break
    }
    assert.equal(n, 2)
    for await (const _ of stream) assert.fail('a closed stream yields nothing')
    assert.equal(stream.usage, null)
  })

  test('a streamed tool call reassembles into valid JSON arguments', async () => {
    const stream = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [WEATHER],
      stream: true,
    })
    let name = ''
    let args = ''
    let finish = null
    for await (const c of stream) {
      for (const tc of c.choices[0]?.delta.tool_calls ?? []) {
        name += tc.function.name ?? ''
        args += tc.function.arguments ?? ''
      }
      finish = c.choices[0]?.finish_reason ?? finish
    }
    assert.equal(name, 'get_weather')
    assert.equal(typeof JSON.parse(args).city, 'string')
    assert.equal(finish, 'tool_calls')
  })
})

describe('tools', () => {
  for (const model of MODELS) {
    test(`tool-call round trip with ${model}`, async () => {
      const messages = [{ role: 'user', content: 'Weather in Paris?' }]
      const first = await client.chat.completions.create({ model, messages, tools: [WEATHER] })
      assert.equal(first.choices[0].finish_reason, 'tool_calls')
      const call = first.choices[0].message.tool_calls[0]
      assert.equal(call.type, 'function')
      assert.equal(call.function.name, 'get_weather')
      assert.equal(typeof JSON.parse(call.function.arguments).city, 'string')
      // The response message object goes back into the conversation as is.
      messages.push(first.choices[0].message, { role: 'tool', tool_call_id: call.id, content: '18C' })
      const second = await client.chat.completions.create({ model, messages, tools: [WEATHER] })
      assert.equal(second.choices[0].finish_reason, 'stop')
      assert.ok(second.choices[0].message.content)
    })
  }

  test('tool_choice naming a function forces it', async () => {
    const resp = await client.chat.completions.create({
      model: 'anthropic/claude-sonnet-4-5',
      messages: [{ role: 'user', content: 'Weather in Oslo?' }],
      tools: [WEATHER],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    })
    assert.equal(resp.choices[0].message.tool_calls[0].function.name, 'get_weather')
  })
})

describe('input errors name the field', () => {
  const cases = [
    [{ model: 'openai/gpt-4o', messages: [] }, 'messages', /messages/],
    [{ model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'x' }], temperature: 7 }, 'temperature', /temperature/],
    [{ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }, 'model', /provider\/model/],
    [{ model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'x', nme: 'typo' }] }, null, /nme/],
    [{ model: 'openai/gpt-4o', messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id', /tool_call_id/],
  ]
  for (const [body, field, message] of cases) {
    test(`rejects ${JSON.stringify(body).slice(0, 70)}`, async () => {
      await assert.rejects(client.chat.completions.create(body), (err) => {
        assert.ok(err instanceof gr.InvalidRequestError)
        assert.ok(err instanceof gr.GateRouterError)
        assert.equal(err.code, 'INVALID_REQUEST')
        assert.match(err.message, message)
        if (field) assert.equal(err.field, field)
        assert.equal(err.provider, null)
        return true
      })
    })
  }

  test('a non-object body is refused before reaching Rust', async () => {
    await assert.rejects(client.chat.completions.create(null), gr.InvalidRequestError)
  })
})

describe('configuration', () => {
  test('unknown config keys throw ConfigError naming the key', () => {
    assert.throws(
      () => new GateRouter({ config: { timeouts: { request_msec: 5 } } }),
      (err) => err instanceof gr.ConfigError && err.code === 'CONFIG' && /request_msec/.test(err.message),
    )
  })

  test('a TOML configFile is read, and its errors name the file field', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gaterouter-node-'))
    const bad = path.join(dir, 'bad.toml')
    writeFileSync(bad, '[providers.vllm]\nkind = "openai"\nbase_url = "not a url"\n')
    assert.throws(() => new GateRouter({ configFile: bad }), (err) => {
      assert.ok(err instanceof gr.ConfigError)
      assert.match(err.message, /providers\.vllm\.base_url/)
      return true
    })
    const good = path.join(dir, 'good.toml')
    writeFileSync(good, `[providers.openai]\nbase_url = "${emu.baseUrl}/openai/v1"\napi_key = "emulator-key"\n`)
    const fileClient = new GateRouter({ configFile: good })
    const resp = await fileClient.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'from toml' }] })
    assert.match(resp.choices[0].message.content, /from toml/)
    await fileClient.close()
  })

  test('config and configFile together, or an unknown option, are refused', () => {
    assert.throws(() => new GateRouter({ config: {}, configFile: 'x.toml' }), gr.ConfigError)
    assert.throws(() => new GateRouter({ apiKey: 'sk-...' }), (err) => err instanceof gr.ConfigError && /apiKey/.test(err.message))
  })

  test('a missing configFile is a ConfigError', () => {
    assert.throws(() => new GateRouter({ configFile: '/nonexistent/gaterouter.toml' }), gr.ConfigError)
  })
})

describe('module formats', () => {
  test('require() and import give the same classes', () => {
    const require = createRequire(import.meta.url)
    const cjs = require('gaterouter')
    assert.equal(cjs.GateRouter, GateRouter)
    assert.equal(cjs.GateRouterError, gr.GateRouterError)
    assert.equal(cjs.default, GateRouter)
    assert.equal(typeof gr.coreVersion(), 'string')
    // Every CommonJS export is an ESM named export, the same object.
    for (const [name, value] of Object.entries(cjs)) {
      if (name !== 'default') assert.equal(gr[name], value, name)
    }
    for (const name of ['countTokens', 'countTokensSync', 'estimateCost', 'estimateCostSync', 'cost']) {
      assert.equal(typeof gr[name], 'function', name)
    }
  })
})
