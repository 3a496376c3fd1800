// Outcome feedback (issue 20) from Node, against the provider emulator and a real
// collector (target/debug/gaterouter-collector on SQLite): responses and a stream's last
// chunk name their usage record; client.feedback() signs and spools a feedback record
// that flush() delivers with the usage records; the collector joins it to the call in
// the `outcomes` report; bad input is an InvalidRequestError naming the field.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { ConfigError, GateRouter, InvalidRequestError } from 'gaterouter'
import { Collector } from '../testing/collector.mjs'
import { Emulator } from '../testing/emulator.mjs'

const user = (content) => [{ role: 'user', content }]
/** A usage record id as the core writes it: a lowercase hyphenated UUID. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

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

/** The `outcomes` report rows of one key, by model (the admin token, as the helpers use). */
async function outcomesByModel(keyId) {
  const t = await collector.request('GET', `/v1/analytics/outcomes?by=model&key=${encodeURIComponent(keyId)}`)
  return t.rows
}

/** The row of a model (its group is the model name, without the provider). */
function row(rows, model) {
  const r = rows.find((x) => x.group === model)
  assert.ok(r, `no row for ${model}: ${JSON.stringify(rows)}`)
  return r
}

describe('outcome feedback', () => {
  test('a chat names its usage record; feedback on it is delivered with the records and joins the call', async () => {
    const client = await reportingClient('k_node_feedback')
    try {
      const calls = []
      for (const [model, q] of [
        ['openai/gpt-4o-mini', 'first'],
        ['openai/gpt-4o-mini', 'second'],
        ['deepseek/deepseek-chat', 'unrated'],
      ]) {
        calls.push(await client.chat.completions.create({ model, messages: user(q) }))
      }
      const ids = calls.map((c) => c.usage_record_id)
      for (const id of ids) assert.match(id, UUID)
      assert.equal(new Set(ids).size, 3, 'one record per call')

      const before = await client.flush({ timeoutMs: 10_000 })
      assert.deepEqual([before.drained, before.delivered, before.pending, before.refused], [true, 3, 0, 0], JSON.stringify(before))

      const f1 = client.feedback(ids[0], 1, { label: 'thumbs_up', tags: { screen: 'chat' } })
      const f2 = client.feedback(ids[1], 0.5)
      for (const f of [f1, f2]) assert.match(f, UUID)
      assert.notEqual(f1, f2)
      assert.ok(!ids.includes(f1) && !ids.includes(f2), 'a feedback has its own id')

      const r = await client.flush({ timeoutMs: 10_000 })
      assert.deepEqual([r.drained, r.delivered, r.pending, r.refused], [true, 5, 0, 0], `3 calls + 2 feedback records: ${JSON.stringify(r)}`)

      const rows = await outcomesByModel('k_node_feedback')
      const mini = row(rows, 'gpt-4o-mini')
      assert.deepEqual([mini.calls, mini.rated_calls, mini.mean_score], [2, 2, 0.75], JSON.stringify(rows))
      const ds = row(rows, 'deepseek-chat')
      assert.deepEqual([ds.calls, ds.rated_calls, ds.mean_score], [1, 0, null], JSON.stringify(rows))
      // Feedback records are not calls.
      assert.equal((await collector.summary('?key=k_node_feedback')).calls, 3)
    } finally {
      await client.close()
    }
  })

  test("a stream's last chunk carries usage_record_id (and stream.usageRecordId)", async () => {
    const client = await reportingClient('k_node_feedback_stream')
    try {
      const stream = await client.chat.completions.create({
        model: 'anthropic/claude-haiku-4-5',
        messages: user('Tell a short fox story'),
        stream: true,
      })
      const chunks = []
      for await (const chunk of stream) chunks.push(chunk)
      const last = chunks.at(-1)
      assert.ok(last.usage, 'the last chunk carries usage')
      assert.match(last.usage_record_id, UUID)
      assert.equal(chunks.filter((c) => c.usage_record_id !== undefined).length, 1, 'only the usage chunk names the record')
      assert.equal(stream.usageRecordId, last.usage_record_id)

      const id = client.feedback(stream.usageRecordId, 1, { source: 'evaluator' })
      assert.match(id, UUID)
      const r = await client.flush({ timeoutMs: 10_000 })
      assert.deepEqual([r.drained, r.delivered, r.pending, r.refused], [true, 2, 0, 0], JSON.stringify(r))
      const haiku = row(await outcomesByModel('k_node_feedback_stream'), 'claude-haiku-4-5')
      assert.deepEqual([haiku.calls, haiku.rated_calls, haiku.mean_score], [1, 1, 1])
    } finally {
      await client.close()
    }
  })

  test('shadow sampling: the other arm answers too, on response.shadow, to rate beside the call', async () => {
    // An org of its own, with every plain auto call shadowed and no exploration.
    const { identity, reporting } = await collector.registerKey('shadowco', 'k_node_shadow')
    await collector.request('PUT', '/v1/admin/orgs/shadowco/routing', { learning: true, explore_permille: 0, shadow_permille: 1000 })
    const client = new GateRouter({ config: emu.config({ retry: { max_retries: 0 }, identity, reporting }) })
    try {
      const resp = await client.chat.completions.create({ model: 'auto', messages: user('Say hi') })
      const shadow = resp.shadow
      assert.ok(shadow, `a shadow answer: ${JSON.stringify(resp)}`)
      assert.equal(resp.shadow_error, undefined)
      assert.equal(shadow.shadow, undefined)
      assert.notEqual(shadow.model, resp.model)
      assert.match(shadow.usage_record_id, UUID)
      assert.notEqual(shadow.usage_record_id, resp.usage_record_id)
      assert.equal(shadow.route.shadow_of, resp.usage_record_id)
      assert.notEqual(resp.route.tier === 'heavy', shadow.route.tier === 'heavy', `${resp.route.tier} / ${shadow.route.tier}`)
      assert.ok(shadow.choices[0].message.content.length > 0)
      client.feedback(resp.usage_record_id, 1, { source: 'evaluator' })
      client.feedback(shadow.usage_record_id, 0, { source: 'evaluator' })
      // A stream is never shadowed.
      const stream = await client.chat.completions.create({ model: 'auto', messages: user('Say hi'), stream: true })
      for await (const _ of stream) { /* drain */ }
      const r = await client.flush({ timeoutMs: 10_000 })
      assert.deepEqual([r.drained, r.delivered, r.pending, r.refused], [true, 5, 0, 0], `call, shadow, stream + 2 ratings: ${JSON.stringify(r)}`)
      assert.equal((await collector.summary('?key=k_node_shadow')).calls, 3)
    } finally {
      await client.close()
    }
  })

  test('bad feedback throws INVALID_REQUEST naming the field, and nothing is spooled', async () => {
    const client = await reportingClient('k_node_feedback_bad')
    try {
      const { usage_record_id: id } = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: user('hi') })
      const cases = [
        [() => client.feedback(id, 1.5), 'score', /between 0 and 1/],
        [() => client.feedback(id, -0.1), 'score'],
        [() => client.feedback(id, Number.NaN), 'score'],
        [() => client.feedback(id, '1'), 'score'],
        [() => client.feedback('nope', 1), 'record_id', /usage_record_id/],
        [() => client.feedback(42, 1), 'record_id'],
        [() => client.feedback(id, 1, { source: 'robot' }), 'source', /user, evaluator or implicit/],
        [() => client.feedback(id, 1, { label: 'x'.repeat(65) }), 'label'],
        [() => client.feedback(id, 1, { label: '' }), 'label'],
        [() => client.feedback(id, 1, { tags: { n: 1 } }), 'tags'],
        [() => client.feedback(id, 1, { tags: { k: 'v'.repeat(300) } }), 'tags'],
        [() => client.feedback(id, 1, { tags: ['a'] }), 'tags'],
        [() => client.feedback(id, 1, { lable: 'typo' }), 'lable', /unknown option/],
      ]
      for (const [call, field, message] of cases) {
        assert.throws(call, (err) => {
          assert.ok(err instanceof InvalidRequestError, `${err.name}: ${err.message}`)
          assert.equal(err.code, 'INVALID_REQUEST')
          assert.equal(err.field, field, err.message)
          if (message) assert.match(err.message, message)
          return true
        }, `${call} should name ${field}`)
      }
      // Only the call's record was spooled and delivered.
      const r = await client.flush({ timeoutMs: 10_000 })
      assert.deepEqual([r.drained, r.delivered, r.pending, r.refused], [true, 1, 0, 0], JSON.stringify(r))
      assert.equal(row(await outcomesByModel('k_node_feedback_bad'), 'gpt-4o-mini').rated_calls, 0)
    } finally {
      await client.close()
    }
    assert.throws(() => client.feedback('0193c1f0-7a2b-7c3d-8e4f-5a6b7c8d9e0f', 1), { code: 'CLIENT_CLOSED' })
  })

  test('without usage records: no usage_record_id, and feedback is a ConfigError', async () => {
    const client = new GateRouter({ config: emu.config() })
    try {
      const c = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: user('hi') })
      assert.equal(c.usage_record_id, undefined)
      const stream = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: user('hi'), stream: true })
      for await (const chunk of stream) assert.equal(chunk.usage_record_id, undefined)
      assert.equal(stream.usageRecordId, null)
      assert.throws(() => client.feedback('0193c1f0-7a2b-7c3d-8e4f-5a6b7c8d9e0f', 1), (err) => {
        assert.ok(err instanceof ConfigError, `${err.name}: ${err.message}`)
        assert.equal(err.code, 'CONFIG')
        assert.match(err.message, /feedback needs usage records/)
        return true
      })
    } finally {
      await client.close()
    }
  })
})
