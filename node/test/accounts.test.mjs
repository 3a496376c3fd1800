// Organization policies and budgets from a real collector surface in JS as
// PermissionDeniedError / BudgetExceededError with `rule`, `level` and `budget`.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { BudgetExceededError, GateRouter, GateRouterError, PermissionDeniedError } from 'gaterouter'
import { Collector } from '../testing/collector.mjs'
import { Emulator } from '../testing/emulator.mjs'

let emu
let collector
let client

before(async () => {
  ;[emu, collector] = await Promise.all([Emulator.start(), Collector.start()])
  const { identity, reporting } = await collector.registerKey('acme', 'k_node_policy')
  // A deny rule and a one-micro-dollar daily hard budget on the key itself.
  await collector.request('PUT', '/v1/admin/policies/key:k_node_policy', { deny_models: ['gemini/*'] })
  await collector.request('POST', '/v1/admin/budgets', {
    level: 'key:k_node_policy', metric: 'usd', period: 'day', limit: '0.000001', enforcement: 'hard',
  })
  client = new GateRouter({ config: emu.config({ retry: { max_retries: 0 }, identity, reporting, policy: { enforce: 'required' } }) })
})

after(async () => {
  await client?.close()
  await Promise.all([emu?.stop(), collector?.stop()])
})

test('a denied model rejects with the rule and the level that set it', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'gemini/gemini-2.5-flash', messages: [{ role: 'user', content: 'hi' }] }),
    (err) => {
      assert.ok(err instanceof PermissionDeniedError && err instanceof GateRouterError)
      assert.equal(err.code, 'PERMISSION_DENIED')
      assert.equal(err.rule, 'deny_models')
      assert.equal(err.level, 'key:k_node_policy')
      assert.equal(err.budget, null)
      return true
    },
  )
})

test('an exhausted budget rejects with the budget, what is left and when it resets', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'openai/gpt-4o-mini', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] }),
    (err) => {
      assert.ok(err instanceof BudgetExceededError)
      assert.equal(err.code, 'BUDGET_EXCEEDED')
      assert.equal(err.level, 'key:k_node_policy')
      const b = err.budget
      assert.deepEqual([b.level, b.metric, b.period, b.limit, b.enforcement], ['key:k_node_policy', 'usd', 'day', 1, 'hard'])
      assert.ok(b.remaining <= 1 && b.resetsAtMs > b.periodStartMs)
      assert.match(err.message, /resets at/)
      return true
    },
  )
})
