// Issue 16 from Node, against the real collector: records the collector refuses are
// counted and reported by flush() / usageStatus(), and each refusal reason is emitted
// once with process.emitWarning (code GATEROUTER_USAGE_REFUSED), never silently.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { GateRouter } from 'gaterouter'
import { Collector } from '../testing/collector.mjs'
import { Emulator } from '../testing/emulator.mjs'

const user = (content) => [{ role: 'user', content }]

let emu
let collector

before(async () => {
  ;[emu, collector] = await Promise.all([Emulator.start(), Collector.start()])
})

after(async () => {
  await Promise.all([emu?.stop(), collector?.stop()])
})

describe('delivery report', () => {
  test('a minimal identity (api_key_id only) delivers every record', async () => {
    const { identity, reporting } = await collector.registerKey('acme', 'k_node_minimal')
    const client = new GateRouter({ config: emu.config({ identity: { api_key_id: identity.api_key_id }, reporting }) })
    try {
      await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: user('hi') })
      const r = await client.flush({ timeoutMs: 10_000 })
      assert.deepEqual([r.drained, r.delivered, r.pending, r.refused], [true, 1, 0, 0], JSON.stringify(r))
      assert.equal((await collector.summary('?key=k_node_minimal')).calls, 1)
    } finally {
      await client.close()
    }
  })

  test('refused records are counted, reported with the reason and warned about once', async () => {
    const { identity, reporting } = await collector.registerKey('acme', 'k_node_refused')
    // Not a member of the org: the collector refuses every record.
    const client = new GateRouter({ config: emu.config({ identity: { ...identity, user: 'ghost-node' }, reporting }) })
    const warnings = []
    const onWarning = (w) => {
      if (w.code === 'GATEROUTER_USAGE_REFUSED') warnings.push(w)
    }
    process.on('warning', onWarning)
    try {
      for (let i = 0; i < 3; i++) {
        await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: user(`call ${i}`) })
      }
      const r = await client.flush({ timeoutMs: 10_000 })
      assert.deepEqual([r.drained, r.delivered, r.pending, r.refused, r.deadLetters], [true, 0, 0, 3, 3], JSON.stringify(r))
      assert.match(r.lastRefusal, /ghost-node/)
      assert.deepEqual(r.refusals, [{ reason: r.lastRefusal, count: 3 }])
      assert.equal(typeof r.spoolDir, 'string')
      const s = client.usageStatus()
      assert.equal(s.refused, 3)
      // process 'warning' events fire on the next tick.
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(warnings.length, 1, 'one warning per reason, not per record')
      assert.match(warnings[0].message, /refused usage records: .*ghost-node/)
    } finally {
      process.off('warning', onWarning)
      await client.close()
    }
  })
})
