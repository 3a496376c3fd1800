// GateRouter from Node (ESM) against the provider emulator: chat, stream, `auto` with its
// explanation, tools, and flush.
//   cargo run -p gaterouter-emulator -- --listen 127.0.0.1:8080 &
//   npm install ./node   (in your project)
//   GATEROUTER_EMULATOR_URL=http://127.0.0.1:8080 node examples/node/quickstart.mjs
import { GateRouter } from 'gaterouter'

const base = (process.env.GATEROUTER_EMULATOR_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '')
const client = new GateRouter({ config: { providers: {
  openai: { base_url: `${base}/openai/v1`, api_key: 'emulator-key' },
  anthropic: { base_url: `${base}/anthropic`, api_key: 'emulator-key' },
  gemini: { base_url: `${base}/gemini/v1beta`, api_key: 'emulator-key' },
  deepseek: { base_url: `${base}/deepseek/v1`, api_key: 'emulator-key' },
} } })

// 1. Chat.
const r = await client.chat.completions.create({ model: 'anthropic/claude-haiku-4-5', messages: [{ role: 'user', content: 'Say hi' }] })
console.log('chat:', r.choices[0].message.content, `(${r.usage.total_tokens} tokens, ${r.cost?.total_micros} micro-USD)`)
if (!r.choices[0].message.content) throw new Error('empty answer')

// 2. Stream: usage arrives with the last chunk.
const stream = await client.chat.completions.create({ model: 'gemini/gemini-2.5-flash', messages: [{ role: 'user', content: 'Count to 3' }], stream: true })
let text = ''
for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
console.log('stream:', text, `(${stream.usage?.completion_tokens} completion tokens)`)
if (!text) throw new Error('empty stream')

// 3. auto: explained before calling, then called.
const messages = [{ role: 'user', content: 'Prove that sqrt(2) is irrational.' }]
const d = client.route({ messages })
console.log('route:', d.chosen, d.tier, `score ${d.score?.toFixed(3)}:`, d.reason)
const a = await client.chat.completions.create({ model: 'auto', messages })
console.log('auto answered by', a.route?.chosen ?? a.model)

// 4. Tools.
const weather = { type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }
const msgs = [{ role: 'user', content: 'Weather in Paris?' }]
const first = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: msgs, tools: [weather] })
const call = first.choices[0].message.tool_calls?.[0]
console.log('tools: the model called', call?.function.name)
if (call) {
  msgs.push(first.choices[0].message, { role: 'tool', tool_call_id: call.id, content: JSON.stringify({ celsius: 18 }) })
  const second = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: msgs, tools: [weather] })
  console.log('tools: final answer:', second.choices[0].message.content)
}

// 5. Flush: without [reporting] there are no usage records; it returns at once.
//    The delivery report counts delivered, pending and refused records (with reasons).
const report = await client.flush({ timeoutMs: 5000 })
console.log(`flush: drained=${report.drained} delivered=${report.delivered} pending=${report.pending} refused=${report.refused}`)
if (report.refused > 0) throw new Error(`records refused: ${report.lastRefusal}`)
await client.close()
console.log('node example: ok')
