// The same program in TypeScript, type-checked with `tsc --strict --noEmit`
// (tests/examples/run.sh); the types come from the package (index.d.ts).
import { GateRouter, GateRouterError } from 'gaterouter'

// The few Node globals used here (so the check needs no @types/node).
declare const process: { env: Record<string, string | undefined>; stdout: { write(s: string): boolean }; exit(code: number): never }

async function main(): Promise<void> {
  const base = (process.env.GATEROUTER_EMULATOR_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '')
  const client = new GateRouter({ config: { providers: {
    openai: { base_url: `${base}/openai/v1`, api_key: 'emulator-key' },
    anthropic: { base_url: `${base}/anthropic`, api_key: 'emulator-key' },
  } } })
  const r = await client.chat.completions.create({ model: 'anthropic/claude-haiku-4-5', messages: [{ role: 'user', content: 'Say hi' }] })
  const text: string | null = r.choices[0].message.content
  console.log('chat:', text, r.usage.total_tokens)
  const stream = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'Count to 3' }], stream: true })
  for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? '')
  const d = client.route({ messages: [{ role: 'user', content: 'Prove that sqrt(2) is irrational.' }] })
  console.log('\nroute:', d.chosen, d.tier, d.reason)
  const f = await client.flush({ timeoutMs: 5000 })
  console.log('flush drained:', f.drained)
  await client.close()
}

main().catch((e: unknown) => {
  if (e instanceof GateRouterError) console.error(e.code, e.message)
  else console.error(e)
  process.exit(1)
})
